/*
 * crash — echoes like `echo` ("rpmsg-echo"); after CRASH_AFTER messages it
 * loads from 0xDEADBEEF, an address no memory covers: the core faults.
 */
#include "rsim_printf.h"
#include "rsim_rpmsg.h"

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);

#define CRASH_AFTER   10u
#define CRASH_ADDRESS 0xDEADBEEFu

static uint32_t received;

static void on_message(struct rsim_rpmsg_ept *ept, const void *data, uint32_t len, uint32_t src,
                       void *priv)
{
    (void)priv;
    received++;
    int rc = rsim_rpmsg_send(ept, src, data, len);
    if (rc < 0)
        rsim_printf("crash: reply to %u failed: %d\n", src, rc);
}

int main(void)
{
    rsim_trace_attach(rsim_trace_buf, RSIM_TRACE_BUF_LEN);

    (void)rsim_rpmsg_start_service(&rsim_rsc_table.vdev, "rpmsg-echo", on_message, 0);
    rsim_printf("crash: ready, faulting after %u messages\n", CRASH_AFTER);

    for (;;) {
        rsim_rpmsg_wait_and_poll();
        if (received >= CRASH_AFTER) {
            rsim_printf("crash: loading from 0x%08x\n", CRASH_ADDRESS);
            uint32_t v = *(volatile uint32_t *)(uintptr_t)CRASH_ADDRESS;
            rsim_panic(v); /* not reached: the load faults */
        }
    }
}
