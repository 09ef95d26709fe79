/*
 * compute-irq — compute's loop (ITERATIONS passes of add, xor, subtract, branch) with the core
 * timer interrupting at 1 kHz throughout, then "compute-irq: done <result> ticks <n>" on
 * CONSOLE. `rproc-sim bench --suite emulated` compares its speed with compute's: what taking
 * interrupts costs an emulated core that is busy.
 */
#include "rsim_compute.h"
#include "rsim_irq.h"
#include "rsim_printf.h"
#include "rsim_rpmsg.h"

#define ITERATIONS 50000000u

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);

int main(void)
{
    rsim_irq_init();
    rsim_timer_start(1000);
    rsim_irq_enable();
    uint32_t acc = rsim_compute_loop(ITERATIONS);
    rsim_timer_start(0);
    rsim_printf("compute-irq: done %x ticks %u\n", acc, rsim_timer_ticks);
    for (;;)
        rsim_irq_wait();
}
