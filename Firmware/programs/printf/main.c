/*
 * printf — exercises the tiny printf: a few formatted lines on the CONSOLE
 * and the same lines in the trace buffer, then idles.
 */
#include "rsim_printf.h"
#include "rsim_rpmsg.h"

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);

#if defined(__arm__) || defined(__thumb__)
#define ARCH_NAME "cortex-m4"
#elif defined(__riscv)
#define ARCH_NAME "rv32"
#else
#error "unsupported architecture"
#endif

int main(void)
{
    rsim_trace_attach(rsim_trace_buf, RSIM_TRACE_BUF_LEN);

    /* printf: -42 42 beef str c 0x20000000 % */
    rsim_printf_to(RSIM_OUT_BOTH, "printf: %d %u %x %s %c %p %%\n", -42, 42u, 0xBEEFu, "str", 'c',
                   (void *)&rsim_rsc_table);
    /* printf: [   42] [42   ] [00042] [-0042] [0000beef] [BEEF] */
    rsim_printf_to(RSIM_OUT_BOTH, "printf: [%5d] [%-5d] [%05d] [%05d] [%08x] [%X]\n", 42, 42, 42,
                   -42, 0xBEEFu, 0xBEEFu);
    /* printf: [  abc] [abc  ] [ab] [x] */
    rsim_printf_to(RSIM_OUT_BOTH, "printf: [%5s] [%-5s] [%.2s] [%c]\n", "abc", "abc", "abc", 'x');
    /* printf: -2147483648 4294967295 ffffffff 0 */
    rsim_printf_to(RSIM_OUT_BOTH, "printf: %d %u %x %u\n", (int)0x80000000u, 0xFFFFFFFFu,
                   0xFFFFFFFFu, 0u);

    char buf[16];
    int n = rsim_snprintf(buf, sizeof buf, "%s-%d", "snprintf", 12345);
    /* printf: snprintf-12345 (14) */
    rsim_printf_to(RSIM_OUT_BOTH, "printf: %s (%d)\n", buf, n);
    rsim_printf_to(RSIM_OUT_BOTH, "printf: done on " ARCH_NAME "\n");

    for (;;) {
        uint32_t pending = rsim_wait();
        if (pending != 0)
            rsim_ack(pending);
    }
}
