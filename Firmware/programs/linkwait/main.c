/*
 * linkwait — an echo service whose link comes up the way firmware paired with
 * a Linux host brings it up (NXP's rpmsg-lite remote, for one): only when the
 * host first kicks the transmit ring (vring 0), which Linux's virtio_rpmsg_bus
 * does once, right after it set DRIVER_OK, to say "you may send now".
 * Until then it prints "still no link up" every 100 ms and announces nothing.
 *
 * Its resource table is a vendor table of that kind: fixed vring addresses,
 * 256-entry vrings, and the vdev's notify id equal to vring 0's (0), which a
 * Linux host accepts (it never uses the vdev's id and allocates the vrings'
 * itself) and an OpenAMP host refuses (it allocates every id once).
 */
#include "rsim_printf.h"
#include "rsim_rpmsg.h"

#define LINKWAIT_VRING_NUM    256u
#define LINKWAIT_VRING_ALIGN  0x1000u
#define LINKWAIT_VRING0_DA    (RSIM_SHARED_BASE + 0x0000u)
#define LINKWAIT_VRING1_DA    (RSIM_SHARED_BASE + 0x4000u)
#define LINKWAIT_REPORT_US    100000u

char rsim_trace_buf[RSIM_TRACE_BUF_LEN];

__attribute__((used, section(".resource_table"), aligned(8)))
struct rsim_rpmsg_rsc_table rsim_rsc_table = {
    .ver = 1,
    .num = 2,
    .reserved = { 0, 0 },
    .offset = { offsetof(struct rsim_rpmsg_rsc_table, vdev), offsetof(struct rsim_rpmsg_rsc_table, trace) },
    .vdev = {
        .type = RSC_VDEV,
        .id = VIRTIO_ID_RPMSG,
        .notifyid = 0, /* the same as vring 0's, as vendor tables for Linux-paired parts often have it */
        .dfeatures = VIRTIO_RPMSG_F_NS,
        .gfeatures = 0,
        .config_len = 0,
        .status = 0,
        .num_of_vrings = 2,
        .reserved = { 0, 0 },
    },
    .vring = {
        { .da = LINKWAIT_VRING0_DA, .align = LINKWAIT_VRING_ALIGN, .num = LINKWAIT_VRING_NUM, .notifyid = 0, .reserved = 0 },
        { .da = LINKWAIT_VRING1_DA, .align = LINKWAIT_VRING_ALIGN, .num = LINKWAIT_VRING_NUM, .notifyid = 1, .reserved = 0 },
    },
    .trace = {
        .type = RSC_TRACE,
        .da = (uint32_t)(uintptr_t)rsim_trace_buf,
        .len = RSIM_TRACE_BUF_LEN,
        .reserved = 0,
        .name = "rsim-trace",
    },
};

/* Messages echoed so far. */
volatile uint32_t echo_count;

static void on_message(struct rsim_rpmsg_ept *ept, const void *data, uint32_t len, uint32_t src,
                       void *priv)
{
    (void)priv;
    int rc = rsim_rpmsg_send(ept, src, data, len);
    if (rc < 0)
        rsim_printf("linkwait: reply to %u failed: %d\n", src, rc);
    else
        echo_count++;
}

/* Waits for the host's first kick of the transmit ring. Every other kick (an
 * OpenAMP host kicks the vdev's id after its status writes) is acknowledged
 * and otherwise ignored, as such firmware does. */
static void wait_for_link(void)
{
    uint32_t tx_id = rsim_rsc_table.vring[0].notifyid; /* the host wrote it before start */
    if (tx_id > RSIM_NOTIFY_ID_MAX)
        rsim_panic(RSIM_PANIC_RPMSG | 0x1D);
    uint32_t tx_bit = 1u << tx_id;
    uint64_t report_at = rsim_ticks_us() + LINKWAIT_REPORT_US;
    for (;;) {
        uint32_t pending = rsim_pending();
        if (pending & tx_bit)
            break;
        if (pending != 0)
            rsim_ack(pending);
        uint64_t now = rsim_ticks_us();
        if (now >= report_at) {
            rsim_printf("linkwait: still no link up (no kick on the transmit ring, id %u); vdev status 0x%02x\n",
                        tx_id, rsim_rsc_table.vdev.status);
            report_at = now + LINKWAIT_REPORT_US;
        }
        rsim_sleep_us((uint32_t)(report_at - now));
    }
    rsim_ack(tx_bit);
    rsim_printf("linkwait: link up (the host kicked the transmit ring, id %u)\n", tx_id);
}

int main(void)
{
    rsim_trace_attach(rsim_trace_buf, RSIM_TRACE_BUF_LEN);
    wait_for_link();

    (void)rsim_rpmsg_start_service(&rsim_rsc_table.vdev, "rpmsg-echo", on_message, 0);

    rsim_printf("linkwait: ready\n");
    for (;;)
        rsim_rpmsg_wait_and_poll();
}
