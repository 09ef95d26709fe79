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

    struct rsim_rpmsg_ept *ept = rsim_rpmsg_start_service(&rsim_rsc_table.vdev, "rpmsg-echo", on_message, 0);

    rsim_printf("echo: ready\n");
    rsim_trace_printf("echo: serving rpmsg-echo at %u\n", ept->addr);

    for (;;)
        rsim_rpmsg_wait_and_poll();
}
