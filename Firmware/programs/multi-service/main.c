/*
 * multi-service — four services, each behaving differently:
 *   rpmsg-echo   replies with the message
 *   rpmsg-upper  replies with the message in upper case (ASCII)
 *   rpmsg-count  replies with how many messages it has received so far,
 *                this one included (u32, little-endian)
 *   rpmsg-sink   replies nothing; on the payload "destroy" it destroys itself,
 *                which announces an NS destroy to the host
 */
#include "rsim_printf.h"
#include "rsim_rpmsg.h"

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);

static void reply(struct rsim_rpmsg_ept *ept, uint32_t dst, const void *data, uint32_t len)
{
    int rc = rsim_rpmsg_send(ept, dst, data, len);
    if (rc < 0)
        rsim_printf("multi-service: %s reply to %u failed: %d\n", ept->name, dst, rc);
}

static void on_echo(struct rsim_rpmsg_ept *ept, const void *data, uint32_t len, uint32_t src,
                    void *priv)
{
    (void)priv;
    reply(ept, src, data, len);
}

static uint8_t upper_buf[4096];

static void on_upper(struct rsim_rpmsg_ept *ept, const void *data, uint32_t len, uint32_t src,
                     void *priv)
{
    (void)priv;
    if (len > sizeof upper_buf) {
        rsim_printf("multi-service: rpmsg-upper: %u bytes is too long\n", len);
        return;
    }
    const uint8_t *p = data;
    for (uint32_t i = 0; i < len; i++)
        upper_buf[i] = (p[i] >= 'a' && p[i] <= 'z') ? (uint8_t)(p[i] - 'a' + 'A') : p[i];
    reply(ept, src, upper_buf, len);
}

static uint32_t count_received;

static void on_count(struct rsim_rpmsg_ept *ept, const void *data, uint32_t len, uint32_t src,
                     void *priv)
{
    (void)data;
    (void)len;
    (void)priv;
    count_received++;
    uint8_t le[4] = {
        (uint8_t)count_received,
        (uint8_t)(count_received >> 8),
        (uint8_t)(count_received >> 16),
        (uint8_t)(count_received >> 24),
    };
    reply(ept, src, le, sizeof le);
}

static void on_sink(struct rsim_rpmsg_ept *ept, const void *data, uint32_t len, uint32_t src,
                    void *priv)
{
    (void)src;
    (void)priv;
    static const char destroy[] = "destroy";
    if (len != sizeof destroy - 1u)
        return;
    const uint8_t *p = data;
    for (uint32_t i = 0; i < len; i++) {
        if (p[i] != (uint8_t)destroy[i])
            return;
    }
    rsim_printf("multi-service: rpmsg-sink destroyed\n");
    rsim_rpmsg_destroy_ept(ept);
}

static void create(const char *name, rsim_rpmsg_cb cb)
{
    struct rsim_rpmsg_ept *ept;
    int rc = rsim_rpmsg_create_ept(&ept, name, RSIM_RPMSG_ADDR_ANY, cb, 0);
    if (rc < 0)
        rsim_panic(RSIM_PANIC_RPMSG | (uint16_t)-rc);
    rsim_trace_printf("multi-service: %s at %u\n", name, ept->addr);
}

int main(void)
{
    rsim_trace_attach(rsim_trace_buf, RSIM_TRACE_BUF_LEN);

    int rc = rsim_rpmsg_init(&rsim_rsc_table.vdev);
    if (rc < 0)
        rsim_panic(RSIM_PANIC_RPMSG | (uint16_t)-rc);

    create("rpmsg-echo", on_echo);
    create("rpmsg-upper", on_upper);
    create("rpmsg-count", on_count);
    create("rpmsg-sink", on_sink);
    rsim_printf("multi-service: rpmsg-echo, rpmsg-upper, rpmsg-count, rpmsg-sink\n");

    for (;;)
        rsim_rpmsg_wait_and_poll();
}
