/*
 * panic — says its last words, sleeps 1 ms, then reports a fatal error
 * through the PANIC register (code 0xBAD0).
 */
#include "rsim_printf.h"
#include "rsim_rpmsg.h"

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);

#define PANIC_CODE     0xBAD0u
#define PANIC_DELAY_US 1000u

int main(void)
{
    rsim_trace_attach(rsim_trace_buf, RSIM_TRACE_BUF_LEN);
    rsim_printf("panic: last words\n");
    rsim_sleep_us(PANIC_DELAY_US);
    rsim_panic(PANIC_CODE);
}
