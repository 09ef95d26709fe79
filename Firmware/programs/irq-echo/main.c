/*
 * irq-echo — the echo program, interrupt-driven: the mailbox interrupt
 * acknowledges the host's kicks (rsim_irq.c), the main loop sleeps in wfi and
 * processes the vrings when woken. Announces "rpmsg-echo"; a message
 * "irq-count?" is answered with "irq-count <n>", the mailbox interrupts taken.
 */
#include "rsim_irq.h"
#include "rsim_printf.h"
#include "rsim_rpmsg.h"

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);

volatile uint32_t irq_count;
volatile uint32_t echo_count;

void rsim_irq_on_mailbox(uint32_t pending)
{
    (void)pending;
    irq_count++;
}

static int is_query(const void *data, uint32_t len)
{
    static const char query[] = "irq-count?";
    if (len != sizeof query - 1)
        return 0;
    for (uint32_t i = 0; i < len; i++)
        if (((const char *)data)[i] != query[i])
            return 0;
    return 1;
}

static void on_message(struct rsim_rpmsg_ept *ept, const void *data, uint32_t len, uint32_t src,
                       void *priv)
{
    (void)priv;
    int rc;
    if (is_query(data, len)) {
        char reply[32];
        int n = rsim_snprintf(reply, sizeof reply, "irq-count %u", irq_count);
        rc = rsim_rpmsg_send(ept, src, reply, (uint32_t)n);
    } else {
        rc = rsim_rpmsg_send(ept, src, data, len);
    }
    if (rc < 0)
        rsim_printf("irq-echo: reply to %u failed: %d\n", src, rc);
    else
        echo_count++;
}

int main(void)
{
    rsim_trace_attach(rsim_trace_buf, RSIM_TRACE_BUF_LEN);
    rsim_irq_init();

    (void)rsim_rpmsg_start_service(&rsim_rsc_table.vdev, "rpmsg-echo", on_message, 0);

    rsim_irq_enable_mailbox();
    rsim_irq_enable();
    rsim_printf("irq-echo: ready\n");

    for (;;)
        rsim_rpmsg_irq_wait_and_poll();
}
