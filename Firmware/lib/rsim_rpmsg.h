/*
 * rsim_rpmsg.h — RPMsg for rsim firmware: the remote (virtio device) side.
 *
 * One RPMsg virtio device (vdev id 7) with two vrings, in the roles every
 * OpenAMP and Linux host expects:
 *   vring0 = TX (remote → host): the host posts empty buffers on its avail
 *            ring; we fill one (16-byte header + payload), return it on the
 *            used ring with length 16 + payload, and kick vring0's notify id.
 *   vring1 = RX (host → remote): the host posts filled buffers; we deliver
 *            them to the endpoint named by the header's dst, return them on
 *            the used ring and kick vring1's notify id.
 * (Kicks are skipped when the host set VRING_AVAIL_F_NO_INTERRUPT.)
 *
 * Typical program:
 *
 *     #include "rsim_rpmsg.h"
 *     RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);   // rsim_rsc_table + rsim_trace_buf
 *
 *     static void on_msg(struct rsim_rpmsg_ept *ept, const void *data, uint32_t len,
 *                        uint32_t src, void *priv) { rsim_rpmsg_send(ept, src, data, len); }
 *
 *     int main(void) {
 *         int rc = rsim_rpmsg_init(&rsim_rsc_table.vdev);      // waits for DRIVER_OK
 *         if (rc < 0) rsim_panic(RSIM_PANIC_RPMSG | (uint16_t)-rc);
 *         struct rsim_rpmsg_ept *ept;
 *         rc = rsim_rpmsg_create_ept(&ept, "rpmsg-echo", RSIM_RPMSG_ADDR_ANY, on_msg, 0);
 *         ...
 *         for (;;) rsim_rpmsg_wait_and_poll();
 *     }
 *
 * Single-threaded, no interrupts, no dynamic allocation (a static table of
 * RSIM_RPMSG_MAX_EPTS endpoints). Callbacks run inside rsim_rpmsg_poll(); they
 * may send (also with the blocking variants), create and destroy endpoints
 * (including their own), but must not call rsim_rpmsg_poll() or
 * rsim_rpmsg_wait_and_poll() themselves (such a nested call returns 0).
 */
#ifndef RSIM_RPMSG_H
#define RSIM_RPMSG_H

#include <stddef.h>
#include <stdint.h>

#include "rsc_table.h"
#include "rsim.h"
#include "rsim_vring.h"

/* ------------------------------------------------------------------------ */
/* Constants                                                                 */
/* ------------------------------------------------------------------------ */

#define RSIM_RPMSG_ADDR_ANY            0xFFFFFFFFu
#define RSIM_RPMSG_NS_ADDR             53u    /* name-service endpoint */
#define RSIM_RPMSG_RESERVED_ADDRESSES  1024u  /* dynamic addresses start here */
#define RSIM_RPMSG_NAME_SIZE           32     /* name field, NUL-padded */
#define RSIM_RPMSG_HDR_SIZE            16u    /* {u32 src, u32 dst, u32 reserved, u16 len, u16 flags} */
#define RSIM_RPMSG_NS_MSG_SIZE         40u    /* {char name[32], u32 addr, u32 flags} */
#define RSIM_RPMSG_NS_CREATE           0u
#define RSIM_RPMSG_NS_DESTROY          1u

#define RSIM_RPMSG_MAX_EPTS            8
/* Blocking sends wait up to this many times for a host buffer; each wait
 * ends at the next host kick or after RSIM_RPMSG_WAIT_STEP_US. */
#define RSIM_RPMSG_SEND_MAX_WAITS      15000u  /* ≈ 15 s, as OpenAMP */
#define RSIM_RPMSG_WAIT_STEP_US        1000u

/* Resource-table defaults. */
#define RSIM_RPMSG_VRING_NUM           16u
#define RSIM_RPMSG_VRING_ALIGN         16u
#define RSIM_TRACE_BUF_LEN             2048u

/* Errors: OpenAMP's numbers. */
#define RSIM_RPMSG_SUCCESS             0
#define RSIM_RPMSG_ERR_NO_MEM          (-2001) /* endpoint table full */
#define RSIM_RPMSG_ERR_NO_BUFF         (-2002) /* no host buffer available (in time) */
#define RSIM_RPMSG_ERR_PARAM           (-2003) /* bad argument, or no destination */
#define RSIM_RPMSG_ERR_DEV_STATE       (-2004) /* not initialised, or the host reset the device */
#define RSIM_RPMSG_ERR_BUFF_SIZE       (-2005) /* payload larger than the host's buffer − 16 */
#define RSIM_RPMSG_ERR_INIT            (-2006) /* bad vdev or vring in the resource table */
#define RSIM_RPMSG_ERR_ADDR            (-2007) /* endpoint address in use / reserved */

/* Suggested panic code for a failed library call: RSIM_PANIC_RPMSG | (uint16_t)-rc. */
#define RSIM_PANIC_RPMSG               0x52500000u /* "RP" */

/* ------------------------------------------------------------------------ */
/* The standard resource table                                               */
/* ------------------------------------------------------------------------ */

/*
 * Header + one RPMsg vdev with two vrings + one trace entry: 140 bytes.
 *
 *   offset  field
 *        0  ver = 1, num = 2, reserved[2], offset[0] = 24, offset[1] = 92
 *       24  vdev   (type 3, id 7, notifyid, dfeatures, gfeatures, config_len,
 *                   status @ 48, num_of_vrings @ 49, reserved)
 *       52  vring[0] (TX)  da @ 52, align @ 56, num @ 60, notifyid @ 64
 *       72  vring[1] (RX)  da @ 72, align @ 76, num @ 80, notifyid @ 84
 *       92  trace  (type 2, da @ 96, len @ 100, reserved, name @ 108)
 *      140  end
 */
struct rsim_rpmsg_rsc_table {
    RSC_TABLE_HEADER(2);
    struct fw_rsc_vdev vdev;
    struct fw_rsc_vdev_vring vring[2];
    struct fw_rsc_trace trace;
};

_Static_assert(offsetof(struct rsim_rpmsg_rsc_table, vdev) == 24, "vdev at 24");
_Static_assert(offsetof(struct rsim_rpmsg_rsc_table, vdev) + offsetof(struct fw_rsc_vdev, status) == 48,
               "vdev status byte at 48");
_Static_assert(offsetof(struct rsim_rpmsg_rsc_table, vring) == 52, "vrings at 52");
_Static_assert(offsetof(struct rsim_rpmsg_rsc_table, trace) == 92, "trace at 92");
_Static_assert(sizeof(struct rsim_rpmsg_rsc_table) == 140, "table is 140 bytes");

/* Initializer: vdev offering `features` (VIRTIO_RPMSG_F_NS, optionally
 * VIRTIO_RING_F_EVENT_IDX — the library handles both), config_len 0, two vrings
 * (da ANY, align 16, `vring_num` descriptors, notify id ANY), and a trace entry
 * naming `trace_buffer` (`trace_length` bytes). The host fills in the ANY
 * values before it starts the core. */
#define RSIM_RPMSG_RSC_TABLE_INIT(vring_num, trace_buffer, trace_length)                   \
    RSIM_RPMSG_RSC_TABLE_INIT_FEATURES(vring_num, VIRTIO_RPMSG_F_NS, trace_buffer, trace_length)

#define RSIM_RPMSG_RSC_TABLE_INIT_FEATURES(vring_num, features, trace_buffer, trace_length) \
    {                                                                                     \
        .ver = RSC_TABLE_VERSION,                                                         \
        .num = 2,                                                                         \
        .reserved = { 0, 0 },                                                             \
        .offset = { offsetof(struct rsim_rpmsg_rsc_table, vdev),                          \
                    offsetof(struct rsim_rpmsg_rsc_table, trace) },                       \
        .vdev = {                                                                         \
            .type = RSC_VDEV,                                                             \
            .id = VIRTIO_ID_RPMSG,                                                        \
            .notifyid = RSC_NOTIFY_ID_ANY,                                                \
            .dfeatures = (features),                                                      \
            .gfeatures = 0,                                                               \
            .config_len = 0,                                                              \
            .status = 0,                                                                  \
            .num_of_vrings = 2,                                                           \
            .reserved = { 0, 0 },                                                         \
        },                                                                                \
        .vring = {                                                                        \
            { .da = FW_RSC_U32_ADDR_ANY, .align = RSIM_RPMSG_VRING_ALIGN,                 \
              .num = (vring_num), .notifyid = RSC_NOTIFY_ID_ANY, .reserved = 0 },         \
            { .da = FW_RSC_U32_ADDR_ANY, .align = RSIM_RPMSG_VRING_ALIGN,                 \
              .num = (vring_num), .notifyid = RSC_NOTIFY_ID_ANY, .reserved = 0 },         \
        },                                                                                \
        .trace = {                                                                        \
            .type = RSC_TRACE,                                                            \
            .da = (uint32_t)(uintptr_t)(trace_buffer),                                    \
            .len = (trace_length),                                                        \
            .reserved = 0,                                                                \
            .name = "rsim-trace",                                                         \
        },                                                                                \
    }

/*
 * Defines, in the program that uses it (once, at file scope):
 *   char rsim_trace_buf[RSIM_TRACE_BUF_LEN];            (.bss, the trace ring)
 *   struct rsim_rpmsg_rsc_table rsim_rsc_table;         (section .resource_table)
 * Attach the trace ring with rsim_trace_attach(rsim_trace_buf, RSIM_TRACE_BUF_LEN)
 * and start RPMsg with rsim_rpmsg_init(&rsim_rsc_table.vdev).
 */
#define RSIM_RPMSG_RESOURCE_TABLE(vring_num)                                               \
    RSIM_RPMSG_RESOURCE_TABLE_FEATURES(vring_num, VIRTIO_RPMSG_F_NS)

/* The same, offering `features` (e.g. VIRTIO_RPMSG_F_NS | VIRTIO_RING_F_EVENT_IDX:
 * with EVENT_IDX the library kicks past the host's used_event and asks for
 * kicks with avail_event instead of using the ring flags). */
#define RSIM_RPMSG_RESOURCE_TABLE_FEATURES(vring_num, features)                            \
    char rsim_trace_buf[RSIM_TRACE_BUF_LEN];                                              \
    __attribute__((used, section(".resource_table"), aligned(8)))                         \
    struct rsim_rpmsg_rsc_table rsim_rsc_table =                                          \
        RSIM_RPMSG_RSC_TABLE_INIT_FEATURES(vring_num, features, rsim_trace_buf, RSIM_TRACE_BUF_LEN)

/* ------------------------------------------------------------------------ */
/* Endpoints                                                                 */
/* ------------------------------------------------------------------------ */

struct rsim_rpmsg_ept;

/* A message for `ept`: `len` payload bytes at `data` (valid only during the
 * call; the buffer goes back to the host afterwards), sent from address `src`. */
typedef void (*rsim_rpmsg_cb)(struct rsim_rpmsg_ept *ept, const void *data, uint32_t len,
                              uint32_t src, void *priv);

/* A name-service message from the host: service `name` at host address `addr`
 * was created (flags RSIM_RPMSG_NS_CREATE) or destroyed (RSIM_RPMSG_NS_DESTROY). */
typedef void (*rsim_rpmsg_ns_cb)(const char *name, uint32_t addr, uint32_t flags, void *priv);

/* An endpoint. Owned by the library; programs may read it, not write it. */
struct rsim_rpmsg_ept {
    char name[RSIM_RPMSG_NAME_SIZE]; /* "" = unnamed (never announced) */
    uint32_t addr;                   /* local address */
    uint32_t dest;                   /* peer address; ANY until bound (first message, or NS) */
    rsim_rpmsg_cb cb;
    void *priv;
    uint8_t in_use;
};

/* Counters, for debugging (read them with gdb or print them). */
struct rsim_rpmsg_stats {
    uint32_t rx_messages;       /* delivered to an endpoint */
    uint32_t tx_messages;       /* sent, name-service messages included */
    uint32_t dropped_no_ept;    /* no endpoint at hdr.dst */
    uint32_t dropped_bad_hdr;   /* hdr.len larger than the buffer − 16 */
    uint32_t dropped_bad_ns;    /* message to 53 that is not 40 bytes */
    uint32_t ring_errors;       /* corrupt avail idx seen */
    uint32_t resets;            /* NEEDS_RESET handled after start-up */
};

/* ------------------------------------------------------------------------ */
/* API                                                                       */
/* ------------------------------------------------------------------------ */

/*
 * Starts RPMsg on the vdev entry `vdev` of this firmware's resource table
 * (its two vring entries follow it). Blocks until the host sets DRIVER_OK:
 * polls the status byte, idling on rsim_wait() and acknowledging every kick
 * in between; a NEEDS_RESET status is acknowledged by writing 0. Then reads
 * gfeatures (name service on when dfeatures & gfeatures has
 * VIRTIO_RPMSG_F_NS) and the vrings the host filled in.
 * Returns 0, RSIM_RPMSG_ERR_PARAM (not an RPMsg vdev with ≥ 2 vrings) or
 * RSIM_RPMSG_ERR_INIT (a vring the host described is unusable).
 */
int rsim_rpmsg_init(struct fw_rsc_vdev *vdev);

/* 1 while the device is up (initialised, DRIVER_OK, not reset). */
int rsim_rpmsg_is_ready(void);

/* 1 when the name service was negotiated. */
int rsim_rpmsg_ns_enabled(void);

/* Called for every valid name-service message the host sends to address 53
 * (after local endpoints of that name were bound or unbound). */
void rsim_rpmsg_set_ns_callback(rsim_rpmsg_ns_cb cb, void *priv);

/*
 * Creates an endpoint at `addr` (RSIM_RPMSG_ADDR_ANY: the lowest free address
 * from 1024). A non-empty `name` (at most 31 characters) is announced to the
 * host (NS create from `addr` to 53) when the name service is on; a NULL or
 * empty name is never announced. On success *out points to the endpoint.
 * Returns 0, RSIM_RPMSG_ERR_PARAM, _ADDR (in use, or 53 / ANY-range clash),
 * _NO_MEM (table full), _DEV_STATE (not initialised) or the announcement's
 * send error (the endpoint is then not created).
 */
int rsim_rpmsg_create_ept(struct rsim_rpmsg_ept **out, const char *name, uint32_t addr,
                          rsim_rpmsg_cb cb, void *priv);

/* Start-up of a program that serves one endpoint: rsim_rpmsg_init(vdev), then
 * an endpoint named `name` at a dynamic address, announced to the host. A
 * failure panics with RSIM_PANIC_RPMSG | -rc. Returns the endpoint. */
struct rsim_rpmsg_ept *rsim_rpmsg_start_service(struct fw_rsc_vdev *vdev, const char *name, rsim_rpmsg_cb cb,
                                                void *priv);

/* Destroys `ept`: announces NS destroy if its creation was announced, then
 * frees it. Safe inside the endpoint's own callback. */
void rsim_rpmsg_destroy_ept(struct rsim_rpmsg_ept *ept);

/*
 * Sends `len` bytes from `ept` to `dst` (RSIM_RPMSG_ADDR_ANY: ept->dest).
 * Non-blocking: takes the host's next empty buffer on vring0 now.
 * Returns len, or RSIM_RPMSG_ERR_NO_BUFF (no buffer right now),
 * _BUFF_SIZE (len > that buffer's size − 16; nothing is sent), _PARAM
 * (no endpoint, no destination), _DEV_STATE (not up).
 */
int rsim_rpmsg_trysend(struct rsim_rpmsg_ept *ept, uint32_t dst, const void *data, uint32_t len);

/* As rsim_rpmsg_trysend, but when no buffer is available it waits (for a host
 * kick, at most RSIM_RPMSG_WAIT_STEP_US each time) and retries, up to
 * `max_waits` times, then gives RSIM_RPMSG_ERR_NO_BUFF. Kicks that arrive
 * meanwhile are acknowledged and remembered: the next rsim_rpmsg_wait_and_poll()
 * polls at once instead of waiting. */
int rsim_rpmsg_send_wait(struct rsim_rpmsg_ept *ept, uint32_t dst, const void *data,
                         uint32_t len, uint32_t max_waits);

/* rsim_rpmsg_send_wait with RSIM_RPMSG_SEND_MAX_WAITS. */
int rsim_rpmsg_send(struct rsim_rpmsg_ept *ept, uint32_t dst, const void *data, uint32_t len);

/* Payload capacity of the host buffer the next send would use, or
 * RSIM_RPMSG_ERR_NO_BUFF / _DEV_STATE. */
int rsim_rpmsg_tx_capacity(void);

/*
 * Processes every RX buffer available now: delivers each message to the
 * endpoint at hdr.dst (binding its dest to hdr.src if unbound) or to the name
 * service at 53, drops the rest, returns the buffers and kicks. Also follows
 * the vdev status: on NEEDS_RESET it acknowledges (status = 0) and stops; when
 * DRIVER_OK comes back it re-reads the vrings and re-announces named endpoints.
 * Returns the number of buffers processed (≥ 0).
 */
int rsim_rpmsg_poll(void);

/* The main-loop step: unless a kick is already known to be waiting, block on
 * rsim_wait(); acknowledge the PENDING bits (before processing, so no kick is
 * lost); rsim_rpmsg_poll(). Returns what rsim_rpmsg_poll returned. */
int rsim_rpmsg_wait_and_poll(void);

/* Interrupt-driven variant (rsim_irq.h): idles in wfi until the mailbox
 * interrupt has acknowledged a kick, then processes the vrings as
 * rsim_rpmsg_poll() does. Call rsim_irq_init(), rsim_irq_enable_mailbox()
 * and rsim_irq_enable() after rsim_rpmsg_init(). */
int rsim_rpmsg_irq_wait_and_poll(void);

const struct rsim_rpmsg_stats *rsim_rpmsg_get_stats(void);

#endif /* RSIM_RPMSG_H */
