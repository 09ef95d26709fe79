/*
 * echo — announces "rpmsg-echo" and sends every message back to its sender.
 */
#include "rsim_printf.h"
#include "rsim_rpmsg.h"

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);

/* Messages echoed so far (a global to watch or print from a debugger). */
volatile uint32_t echo_count;

static void on_message(struct rsim_rpmsg_ept *ept, const void *data, uint32_t len, uint32_t src,
                       void *priv)
{
    (void)priv;
    int rc = rsim_rpmsg_send(ept, src, data, len);
    if (rc < 0)
        rsim_printf("echo: reply to %u failed: %d\n", src, rc);
    else
        echo_count++;
}

int main(void)
{
    rsim_trace_attach(rsim_trace_buf, RSIM_TRACE_BUF_LEN);

    int rc = rsim_rpmsg_init(&rsim_rsc_table.vdev);
    if (rc < 0)
        rsim_panic(RSIM_PANIC_RPMSG | (uint16_t)-rc);

    struct rsim_rpmsg_ept *ept;
    rc = rsim_rpmsg_create_ept(&ept, "rpmsg-echo", RSIM_RPMSG_ADDR_ANY, on_message, 0);
    if (rc < 0)
        rsim_panic(RSIM_PANIC_RPMSG | (uint16_t)-rc);

    rsim_printf("echo: ready\n");
    rsim_trace_printf("echo: serving rpmsg-echo at %u\n", ept->addr);

    for (;;)
        rsim_rpmsg_wait_and_poll();
}
