/*
 * ping — waits for the host to announce "rpmsg-ping" (an NS create the host
 * sends to address 53), then sends it PING_COUNT messages "ping <i>" one at a
 * time, waiting for each reply and checking it equals what was sent.
 * Prints "ping: 100/100 replies ok"; panics with 0x0B0B0000 | i on the first
 * wrong, missing or unsendable message.
 */
#include "rsim_printf.h"
#include "rsim_rpmsg.h"

/* Offers EVENT_IDX: the library's event-index paths run here (echo and the others use flags). */
RSIM_RPMSG_RESOURCE_TABLE_FEATURES(RSIM_RPMSG_VRING_NUM, VIRTIO_RPMSG_F_NS | VIRTIO_RING_F_EVENT_IDX);

#define PING_COUNT      100
#define PING_SERVICE    "rpmsg-ping"
#define PING_MAX_WAITS  5000 /* main-loop steps to wait for one reply */
#define PING_PANIC      0x0B0B0000u

static volatile uint32_t service_addr = RSIM_RPMSG_ADDR_ANY;

static uint8_t reply[64];
static volatile int reply_len = -1; /* -1: no reply yet */

static void on_name_service(const char *name, uint32_t addr, uint32_t flags, void *priv)
{
    (void)priv;
    const char *want = PING_SERVICE;
    int i = 0;
    while (want[i] != '\0' && name[i] == want[i])
        i++;
    if (want[i] != '\0' || name[i] != '\0')
        return;
    if (flags == RSIM_RPMSG_NS_CREATE)
        service_addr = addr;
    else if (service_addr == addr)
        service_addr = RSIM_RPMSG_ADDR_ANY;
}

static void on_reply(struct rsim_rpmsg_ept *ept, const void *data, uint32_t len, uint32_t src,
                     void *priv)
{
    (void)ept;
    (void)src;
    (void)priv;
    if (len > sizeof reply) {
        reply_len = (int)len; /* too long: cannot equal what we sent */
        return;
    }
    const uint8_t *p = data;
    for (uint32_t i = 0; i < len; i++)
        reply[i] = p[i];
    reply_len = (int)len;
}

int main(void)
{
    rsim_trace_attach(rsim_trace_buf, RSIM_TRACE_BUF_LEN);
    rsim_rpmsg_set_ns_callback(on_name_service, 0);

    int rc = rsim_rpmsg_init(&rsim_rsc_table.vdev);
    if (rc < 0)
        rsim_panic(RSIM_PANIC_RPMSG | (uint16_t)-rc);

    /* Unnamed: not announced; replies come back to its address. */
    struct rsim_rpmsg_ept *ept;
    rc = rsim_rpmsg_create_ept(&ept, 0, RSIM_RPMSG_ADDR_ANY, on_reply, 0);
    if (rc < 0)
        rsim_panic(RSIM_PANIC_RPMSG | (uint16_t)-rc);

    rsim_printf("ping: waiting for " PING_SERVICE "\n");
    while (service_addr == RSIM_RPMSG_ADDR_ANY)
        rsim_rpmsg_wait_and_poll();
    uint32_t target = service_addr;
    rsim_trace_printf("ping: " PING_SERVICE " at %u, sending from %u\n", target, ept->addr);

    char msg[32];
    for (int i = 0; i < PING_COUNT; i++) {
        int len = rsim_snprintf(msg, sizeof msg, "ping %d", i);
        reply_len = -1;
        if (rsim_rpmsg_send(ept, target, msg, (uint32_t)len) != len)
            rsim_panic(PING_PANIC | (uint32_t)i);

        for (int waited = 0; reply_len < 0; waited++) {
            if (waited >= PING_MAX_WAITS)
                rsim_panic(PING_PANIC | (uint32_t)i);
            rsim_rpmsg_wait_and_poll();
        }
        if (reply_len != len)
            rsim_panic(PING_PANIC | (uint32_t)i);
        for (int k = 0; k < len; k++) {
            if (reply[k] != (uint8_t)msg[k])
                rsim_panic(PING_PANIC | (uint32_t)i);
        }
    }
    rsim_printf("ping: %d/%d replies ok\n", PING_COUNT, PING_COUNT);

    for (;;)
        rsim_rpmsg_wait_and_poll();
}
