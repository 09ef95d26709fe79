/*
 * rsim_rpmsg.c — RPMsg, remote (virtio device) side. See rsim_rpmsg.h.
 *
 * Wire formats (little-endian), written and read byte by byte because a
 * host buffer may start at any address:
 *   header   0 u32 src | 4 u32 dst | 8 u32 reserved (0) | 12 u16 len | 14 u16 flags (0)
 *   payload  at 16, hdr.len bytes
 *   NS msg   0 char name[32] (NUL-padded) | 32 u32 addr | 36 u32 flags (0 create, 1 destroy)
 */
#include "rsim_rpmsg.h"
#include "rsim_irq.h"
#include "rsim_pm.h"

/* ------------------------------------------------------------------------ */
/* State                                                                     */
/* ------------------------------------------------------------------------ */

static struct {
    volatile struct fw_rsc_vdev *vdev; /* in the resource table; the host writes it */
    struct rsim_vring tx;              /* vring0: remote → host */
    struct rsim_vring rx;              /* vring1: host → remote */
    uint8_t up;                        /* DRIVER_OK seen and vrings attached */
    uint8_t ns;                        /* name service negotiated */
    uint8_t in_poll;                   /* rsim_rpmsg_poll is running */
    uint8_t kick_seen;                 /* kicks were acknowledged but not polled for */
    rsim_rpmsg_ns_cb ns_cb;
    void *ns_priv;
    struct rsim_rpmsg_stats stats;
} dev;

static struct rsim_rpmsg_ept epts[RSIM_RPMSG_MAX_EPTS];

/* ------------------------------------------------------------------------ */
/* Small helpers (no libc)                                                   */
/* ------------------------------------------------------------------------ */

static uint32_t get_le16(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8);
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void put_le16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Copies len bytes, a word at a time when both ends are word-aligned (a host
 * may hand out buffers at any address: unaligned ones are copied bytewise). */
static void copy_bytes(uint8_t *dst, const uint8_t *src, uint32_t len)
{
    uint32_t i = 0;
    if ((((uintptr_t)dst | (uintptr_t)src) & 3u) == 0) {
        for (; i + 4u <= len; i += 4u)
            *(uint32_t *)(uintptr_t)(dst + i) = *(const uint32_t *)(uintptr_t)(src + i);
    }
    for (; i < len; i++)
        dst[i] = src[i];
}

/* Equal names, compared over at most RSIM_RPMSG_NAME_SIZE bytes. */
static int name_eq(const char *a, const char *b)
{
    for (int i = 0; i < RSIM_RPMSG_NAME_SIZE; i++) {
        if (a[i] != b[i])
            return 0;
        if (a[i] == '\0')
            return 1;
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* The vdev: status handshake and vrings                                     */
/* ------------------------------------------------------------------------ */

static uint8_t vdev_status(void)
{
    return dev.vdev->status; /* volatile: the host writes it at any time */
}

/* The host asked for a reset (NEEDS_RESET): acknowledge by writing 0. */
static void ack_reset(void)
{
    dev.vdev->status = 0;
    rsim_mb();
}

static int status_ok(uint8_t s)
{
    return (s & VIRTIO_CONFIG_S_DRIVER_OK) != 0 && (s & VIRTIO_CONFIG_S_NEEDS_RESET) == 0;
}

/* Up, and the host has not reset the device since. */
static int link_ok(void)
{
    return dev.up && status_ok(vdev_status());
}

/* Vring entry k, which follows the vdev entry in the table. */
static volatile struct fw_rsc_vdev_vring *vdev_vring(unsigned k)
{
    return (volatile struct fw_rsc_vdev_vring *)((uintptr_t)dev.vdev + sizeof(struct fw_rsc_vdev) +
                                                 k * sizeof(struct fw_rsc_vdev_vring));
}

/* After DRIVER_OK: read the negotiated features and the vrings the host
 * filled in (da, align, num, notify id). */
static int attach(void)
{
    rsim_mb(); /* the status we saw before the fields the host wrote before it */
    uint32_t features = dev.vdev->dfeatures & dev.vdev->gfeatures;
    dev.ns = (features & VIRTIO_RPMSG_F_NS) != 0;

    struct rsim_vring *rings[2] = { &dev.tx, &dev.rx };
    for (unsigned k = 0; k < 2; k++) {
        volatile struct fw_rsc_vdev_vring *v = vdev_vring(k);
        if (rsim_vring_attach(rings[k], v->da, v->align, v->num, v->notifyid) < 0)
            return RSIM_RPMSG_ERR_INIT;
        rings[k]->event_idx = (features & VIRTIO_RING_F_EVENT_IDX) != 0;
    }
    /* New receive buffers of the host (vring0) need no kick: a send takes
     * them when it needs one and asks for kicks only while it waits (as
     * OpenAMP's remote sets VRING_USED_F_NO_NOTIFY). The host's messages on
     * vring1 are kicked for. */
    rsim_vring_set_kicks(&dev.tx, 0);
    dev.up = 1;
    dev.kick_seen = 1; /* the host may have sent before we looked: poll first */
    return 0;
}

/* Blocks until DRIVER_OK. Acknowledges every kick (the host kicks the vdev's
 * notify id after each status write) before re-reading the status, so a
 * status change and its kick cannot both be missed. */
static void wait_driver_ok(void)
{
    for (;;) {
        uint8_t s = vdev_status();
        if (s & VIRTIO_CONFIG_S_NEEDS_RESET)
            ack_reset();
        else if (s & VIRTIO_CONFIG_S_DRIVER_OK)
            return;
        uint32_t pending = rsim_wait();
        if (pending != 0)
            rsim_ack(pending);
    }
}

static int send_ns(struct rsim_rpmsg_ept *ept, uint32_t flags);

/* Follows the status byte after start-up. Returns 1 while the device is up. */
static int link_update(void)
{
    if (dev.vdev == 0)
        return 0;
    uint8_t s = vdev_status();
    if (!status_ok(s)) {
        if (dev.up) {
            /* The host reset the device: its endpoints are gone. */
            dev.up = 0;
            dev.stats.resets++;
            for (int i = 0; i < RSIM_RPMSG_MAX_EPTS; i++)
                epts[i].dest = RSIM_RPMSG_ADDR_ANY;
        }
        if (s & VIRTIO_CONFIG_S_NEEDS_RESET)
            ack_reset();
        return 0;
    }
    if (!dev.up) {
        /* DRIVER_OK again after a reset: new vrings, announce again. */
        if (attach() < 0)
            return 0;
        for (int i = 0; i < RSIM_RPMSG_MAX_EPTS; i++) {
            if (epts[i].in_use && epts[i].name[0] != '\0' && dev.ns)
                (void)send_ns(&epts[i], RSIM_RPMSG_NS_CREATE);
        }
    }
    return 1;
}

int rsim_rpmsg_init(struct fw_rsc_vdev *vdev)
{
    if (vdev == 0 || vdev->type != RSC_VDEV || vdev->id != VIRTIO_ID_RPMSG ||
        vdev->num_of_vrings < 2)
        return RSIM_RPMSG_ERR_PARAM;
    dev.vdev = vdev;
    dev.up = 0;
    wait_driver_ok();
    return attach();
}

int rsim_rpmsg_is_ready(void)
{
    return link_ok();
}

int rsim_rpmsg_ns_enabled(void)
{
    return dev.ns;
}

void rsim_rpmsg_set_ns_callback(rsim_rpmsg_ns_cb cb, void *priv)
{
    dev.ns_cb = cb;
    dev.ns_priv = priv;
}

const struct rsim_rpmsg_stats *rsim_rpmsg_get_stats(void)
{
    return &dev.stats;
}

/* ------------------------------------------------------------------------ */
/* Sending (vring0)                                                          */
/* ------------------------------------------------------------------------ */

/* One attempt: the host's next empty buffer on vring0, now. */
static int try_send_raw(uint32_t src, uint32_t dst, const void *data, uint32_t len)
{
    if (!link_ok())
        return RSIM_RPMSG_ERR_DEV_STATE;
    if (len > 0xFFFFu)
        return RSIM_RPMSG_ERR_BUFF_SIZE;

    struct rsim_vring_buf b;
    int r = rsim_vring_peek(&dev.tx, 1, RSIM_RPMSG_HDR_SIZE, &b);
    if (r <= 0) {
        if (r < 0)
            dev.stats.ring_errors++;
        rsim_vring_notify(&dev.tx); /* hand back any bad buffers peek dropped */
        return RSIM_RPMSG_ERR_NO_BUFF;
    }
    if (len > b.len - RSIM_RPMSG_HDR_SIZE)
        return RSIM_RPMSG_ERR_BUFF_SIZE; /* not taken: the buffer stays available */
    rsim_vring_take(&dev.tx);

    uint8_t *p = b.data;
    if (((uintptr_t)p & 3u) == 0) {
        /* Whole words where the host's buffer allows (both cores are little-
         * endian): under emulation every store costs far more than a load
         * (docs/performance.md), so fewer, wider stores. */
        volatile uint32_t *w = (volatile uint32_t *)(uintptr_t)p;
        w[0] = src;
        w[1] = dst;
        w[2] = 0;
        w[3] = len & 0xFFFFu; /* len, then flags 0 */
    } else {
        put_le32(p + 0, src);
        put_le32(p + 4, dst);
        put_le32(p + 8, 0);
        put_le16(p + 12, len);
        put_le16(p + 14, 0);
    }
    copy_bytes(p + RSIM_RPMSG_HDR_SIZE, data, len);

    /* put_used orders the buffer contents before the new used.idx. */
    rsim_vring_put_used(&dev.tx, b.head, RSIM_RPMSG_HDR_SIZE + len);
    rsim_vring_notify(&dev.tx);
    dev.stats.tx_messages++;
    return (int)len;
}

/* Retries while there is no buffer, waiting for a kick (or one step) each time. */
static int send_raw(uint32_t src, uint32_t dst, const void *data, uint32_t len, uint32_t max_waits)
{
    int rc = try_send_raw(src, dst, data, len);
    if (rc != RSIM_RPMSG_ERR_NO_BUFF || max_waits == 0)
        return rc;
    /* Out of buffers: ask the host to kick when it adds one, for as long as
     * we wait, then go quiet again. */
    rsim_vring_set_kicks(&dev.tx, 1);
    for (uint32_t waits = 0;; waits++) {
        rc = try_send_raw(src, dst, data, len);
        if (rc != RSIM_RPMSG_ERR_NO_BUFF || waits >= max_waits)
            break;
        /* Hand back RX buffers we have already used up, so the host is never
         * waiting on us while we wait on it. */
        rsim_vring_notify(&dev.rx);
        /* SLEEP returns early once PENDING != 0 (a host kick), e.g. when the
         * host posts new buffers on vring0. */
        rsim_sleep_us(RSIM_RPMSG_WAIT_STEP_US);
        uint32_t pending = rsim_pending();
        if (pending != 0) {
            rsim_ack(pending);
            dev.kick_seen = 1; /* may have been an RX kick: the main loop polls */
        }
    }
    if (link_ok())
        rsim_vring_set_kicks(&dev.tx, 0);
    return rc;
}

static int check_send_args(struct rsim_rpmsg_ept *ept, uint32_t *dst, const void *data, uint32_t len)
{
    if (ept == 0 || !ept->in_use || (data == 0 && len != 0))
        return RSIM_RPMSG_ERR_PARAM;
    if (*dst == RSIM_RPMSG_ADDR_ANY)
        *dst = ept->dest;
    if (*dst == RSIM_RPMSG_ADDR_ANY)
        return RSIM_RPMSG_ERR_PARAM; /* not bound to anyone yet */
    return 0;
}

int rsim_rpmsg_trysend(struct rsim_rpmsg_ept *ept, uint32_t dst, const void *data, uint32_t len)
{
    int rc = check_send_args(ept, &dst, data, len);
    return rc < 0 ? rc : try_send_raw(ept->addr, dst, data, len);
}

int rsim_rpmsg_send_wait(struct rsim_rpmsg_ept *ept, uint32_t dst, const void *data,
                         uint32_t len, uint32_t max_waits)
{
    int rc = check_send_args(ept, &dst, data, len);
    return rc < 0 ? rc : send_raw(ept->addr, dst, data, len, max_waits);
}

int rsim_rpmsg_send(struct rsim_rpmsg_ept *ept, uint32_t dst, const void *data, uint32_t len)
{
    return rsim_rpmsg_send_wait(ept, dst, data, len, RSIM_RPMSG_SEND_MAX_WAITS);
}

int rsim_rpmsg_tx_capacity(void)
{
    if (!link_ok())
        return RSIM_RPMSG_ERR_DEV_STATE;
    struct rsim_vring_buf b;
    int r = rsim_vring_peek(&dev.tx, 1, RSIM_RPMSG_HDR_SIZE, &b);
    rsim_vring_notify(&dev.tx);
    if (r <= 0)
        return RSIM_RPMSG_ERR_NO_BUFF;
    uint32_t cap = b.len - RSIM_RPMSG_HDR_SIZE;
    return cap > 0xFFFFu ? 0xFFFF : (int)cap;
}

/* ------------------------------------------------------------------------ */
/* Endpoints and the name service                                            */
/* ------------------------------------------------------------------------ */

static struct rsim_rpmsg_ept *find_ept(uint32_t addr)
{
    for (int i = 0; i < RSIM_RPMSG_MAX_EPTS; i++) {
        if (epts[i].in_use && epts[i].addr == addr)
            return &epts[i];
    }
    return 0;
}

/* NS create/destroy for `ept`, from its address to 53 (blocking). */
static int send_ns(struct rsim_rpmsg_ept *ept, uint32_t flags)
{
    uint8_t msg[RSIM_RPMSG_NS_MSG_SIZE];
    for (int i = 0; i < RSIM_RPMSG_NAME_SIZE; i++)
        msg[i] = (uint8_t)ept->name[i]; /* NUL-padded at creation */
    put_le32(msg + 32, ept->addr);
    put_le32(msg + 36, flags);
    int rc = send_raw(ept->addr, RSIM_RPMSG_NS_ADDR, msg, sizeof msg, RSIM_RPMSG_SEND_MAX_WAITS);
    return rc < 0 ? rc : 0;
}

int rsim_rpmsg_create_ept(struct rsim_rpmsg_ept **out, const char *name, uint32_t addr,
                          rsim_rpmsg_cb cb, void *priv)
{
    if (out == 0 || cb == 0)
        return RSIM_RPMSG_ERR_PARAM;
    if (!link_ok())
        return RSIM_RPMSG_ERR_DEV_STATE;

    int name_len = 0;
    if (name != 0) {
        while (name[name_len] != '\0') {
            if (++name_len >= RSIM_RPMSG_NAME_SIZE)
                return RSIM_RPMSG_ERR_PARAM; /* needs its NUL within 32 bytes */
        }
    }

    if (addr == RSIM_RPMSG_ADDR_ANY) {
        /* Lowest free dynamic address; the table is small, so this ends. */
        addr = RSIM_RPMSG_RESERVED_ADDRESSES;
        while (find_ept(addr) != 0)
            addr++;
    } else if (addr == RSIM_RPMSG_NS_ADDR || find_ept(addr) != 0) {
        return RSIM_RPMSG_ERR_ADDR;
    }

    struct rsim_rpmsg_ept *ept = 0;
    for (int i = 0; i < RSIM_RPMSG_MAX_EPTS && ept == 0; i++) {
        if (!epts[i].in_use)
            ept = &epts[i];
    }
    if (ept == 0)
        return RSIM_RPMSG_ERR_NO_MEM;

    for (int i = 0; i < RSIM_RPMSG_NAME_SIZE; i++)
        ept->name[i] = i < name_len ? name[i] : '\0';
    ept->addr = addr;
    ept->dest = RSIM_RPMSG_ADDR_ANY;
    ept->cb = cb;
    ept->priv = priv;
    ept->in_use = 1;

    if (ept->name[0] != '\0' && dev.ns) {
        int rc = send_ns(ept, RSIM_RPMSG_NS_CREATE);
        if (rc < 0) {
            ept->in_use = 0;
            return rc;
        }
    }
    *out = ept;
    return 0;
}

void rsim_rpmsg_destroy_ept(struct rsim_rpmsg_ept *ept)
{
    if (ept < &epts[0] || ept >= &epts[RSIM_RPMSG_MAX_EPTS] || !ept->in_use)
        return;
    /* A create was announced exactly when the name is non-empty and NS is on. */
    if (ept->name[0] != '\0' && dev.ns && link_ok())
        (void)send_ns(ept, RSIM_RPMSG_NS_DESTROY);
    ept->in_use = 0;
    ept->cb = 0;
    ept->dest = RSIM_RPMSG_ADDR_ANY;
}

/* A message to 53 from the host: bind/unbind local endpoints of that name,
 * then tell the program. */
static void handle_ns(const uint8_t *p, uint32_t len)
{
    if (len != RSIM_RPMSG_NS_MSG_SIZE) {
        dev.stats.dropped_bad_ns++;
        return;
    }
    char name[RSIM_RPMSG_NAME_SIZE + 1];
    for (int i = 0; i < RSIM_RPMSG_NAME_SIZE; i++)
        name[i] = (char)p[i];
    name[RSIM_RPMSG_NAME_SIZE] = '\0';
    uint32_t addr = get_le32(p + 32);
    uint32_t flags = get_le32(p + 36);
    if (flags != RSIM_RPMSG_NS_CREATE && flags != RSIM_RPMSG_NS_DESTROY) {
        dev.stats.dropped_bad_ns++;
        return;
    }

    for (int i = 0; i < RSIM_RPMSG_MAX_EPTS; i++) {
        struct rsim_rpmsg_ept *e = &epts[i];
        if (!e->in_use || e->name[0] == '\0' || !name_eq(e->name, name))
            continue;
        if (flags == RSIM_RPMSG_NS_CREATE && (e->dest == RSIM_RPMSG_ADDR_ANY || e->dest == addr)) {
            e->dest = addr;
            break;
        }
        if (flags == RSIM_RPMSG_NS_DESTROY && e->dest == addr) {
            e->dest = RSIM_RPMSG_ADDR_ANY;
            break;
        }
    }
    if (dev.ns_cb != 0)
        dev.ns_cb(name, addr, flags, dev.ns_priv);
}

/* ------------------------------------------------------------------------ */
/* Receiving (vring1)                                                        */
/* ------------------------------------------------------------------------ */

/* Delivers one host buffer. Returns the length to put in the used element:
 * the descriptor length (as OpenAMP), or 0 for a malformed message. */
static uint32_t deliver(const struct rsim_vring_buf *b)
{
    const uint8_t *p = b->data;
    uint32_t src = get_le32(p + 0);
    uint32_t dst = get_le32(p + 4);
    uint32_t len = get_le16(p + 12);
    if (len > b->len - RSIM_RPMSG_HDR_SIZE) {
        dev.stats.dropped_bad_hdr++;
        return 0;
    }
    const uint8_t *payload = p + RSIM_RPMSG_HDR_SIZE;

    if (dst == RSIM_RPMSG_NS_ADDR && dev.ns) {
        handle_ns(payload, len);
        return b->len;
    }
    struct rsim_rpmsg_ept *ept = find_ept(dst);
    if (ept == 0) {
        dev.stats.dropped_no_ept++;
        return b->len;
    }
    if (ept->dest == RSIM_RPMSG_ADDR_ANY)
        ept->dest = src; /* bind to the first sender */
    dev.stats.rx_messages++;
    ept->cb(ept, payload, len, src, ept->priv); /* may destroy ept */
    return b->len;
}

int rsim_rpmsg_poll(void)
{
    if (dev.in_poll)
        return 0;
    dev.kick_seen = 0;
    if (!link_update())
        return 0;

    dev.in_poll = 1;
    int n = 0;
    /* With a backlog (more than one message waiting) the host need not kick
     * for the messages it adds while we drain: the ring goes quiet until it is
     * empty, as a virtio driver disables callbacks while it processes. One
     * message (an echo) keeps the kicks on: two stores saved on the reply's path. */
    int quiet = 0;
    for (;;) {
        struct rsim_vring_buf b;
        int r = rsim_vring_peek(&dev.rx, 0, RSIM_RPMSG_HDR_SIZE, &b);
        if (r <= 0) {
            if (r < 0) {
                dev.stats.ring_errors++;
                break;
            }
            /* Kicks on again, then one more look: messages added while the
             * ring was quiet were not kicked for. */
            if (quiet) {
                quiet = 0;
                if (rsim_vring_set_kicks(&dev.rx, 1))
                    continue;
            }
            break;
        }
        if (!quiet && rsim_vring_waiting(&dev.rx) > 1u) {
            rsim_vring_set_kicks(&dev.rx, 0);
            quiet = 1;
        }
        rsim_vring_take(&dev.rx);
        uint32_t used_len = deliver(&b);
        rsim_vring_put_used(&dev.rx, b.head, used_len);
        n++;
        if (!link_ok())
            break; /* reset meanwhile: the next poll deals with it */
    }
    /* Left early (a bad ring, a reset) while quiet: kicks on again, and the
     * next wait does not sleep if messages came meanwhile. */
    if (quiet && rsim_vring_set_kicks(&dev.rx, 1))
        dev.kick_seen = 1;
    /* One kick for the whole batch (and for bad buffers peek returned). */
    rsim_vring_notify(&dev.rx);
    rsim_vring_notify(&dev.tx);
    dev.in_poll = 0;
    return n;
}

int rsim_rpmsg_wait_and_poll(void)
{
    uint32_t pending;
    if (dev.kick_seen)
        pending = rsim_pending(); /* something may be waiting already: don't block */
    else
        pending = rsim_wait();
    if (pending != 0)
        rsim_ack(pending); /* before processing, so no kick is lost */
    int handled = rsim_rpmsg_poll();
    rsim_pm_poll(); /* a suspend request is answered once the vrings are processed */
    return handled;
}

int rsim_rpmsg_irq_wait_and_poll(void)
{
    /* Decide to sleep with interrupts disabled: wfi still wakes on a pending
     * one, which is taken as soon as they are enabled again. */
    for (;;) {
        rsim_irq_disable();
        if (rsim_irq_take_mailbox_events() != 0 || dev.kick_seen) {
            rsim_irq_enable();
            break;
        }
        rsim_wfi();
        rsim_irq_enable();
    }
    int handled = rsim_rpmsg_poll();
    rsim_pm_poll();
    return handled;
}

struct rsim_rpmsg_ept *rsim_rpmsg_start_service(struct fw_rsc_vdev *vdev, const char *name, rsim_rpmsg_cb cb,
                                                void *priv)
{
    int rc = rsim_rpmsg_init(vdev);
    if (rc < 0)
        rsim_panic(RSIM_PANIC_RPMSG | (uint16_t)-rc);
    struct rsim_rpmsg_ept *ept;
    rc = rsim_rpmsg_create_ept(&ept, name, RSIM_RPMSG_ADDR_ANY, cb, priv);
    if (rc < 0)
        rsim_panic(RSIM_PANIC_RPMSG | (uint16_t)-rc);
    return ept;
}
