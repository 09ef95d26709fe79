/*
 * compute-irq — compute's loop (ITERATIONS passes of add, xor, subtract, branch) with the core
 * timer interrupting at 1 kHz throughout, then "compute-irq: done <result> ticks <n>" on
 * CONSOLE. `rproc-sim bench --suite emulated` compares its speed with compute's: what taking
 * interrupts costs an emulated core that is busy.
 */
#include "rsim_irq.h"
#include "rsim_printf.h"
#include "rsim_rpmsg.h"

#define ITERATIONS 50000000u

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);

int main(void)
{
    uint32_t counter = ITERATIONS, acc = 1, mix = 0x9E3779B9u;
    rsim_irq_init();
    rsim_timer_start(1000);
    rsim_irq_enable();
#if defined(__arm__)
    __asm__ volatile("1: adds %0, %0, %1\n"
                     "   eors %0, %0, %2\n"
                     "   subs %1, %1, #1\n"
                     "   bne 1b\n"
                     : "+r"(acc), "+r"(counter) : "r"(mix) : "cc");
#else
    __asm__ volatile("1: add %0, %0, %1\n"
                     "   xor %0, %0, %2\n"
                     "   addi %1, %1, -1\n"
                     "   bnez %1, 1b\n"
                     : "+r"(acc), "+r"(counter) : "r"(mix));
#endif
    rsim_timer_start(0);
    rsim_printf("compute-irq: done %x ticks %u\n", acc, rsim_timer_ticks);
    for (;;)
        rsim_irq_wait();
}
