/*
 * tick — the core timer at 100 Hz, the main loop asleep in wfi between
 * interrupts. Prints "tick: <n> ticks in <us> us" (TICKS, the board's
 * microsecond count) for every 100 ticks from the first, and "tick: ready".
 * An ecall from the main loop before the timer starts proves the trap path:
 * "tick: ecall <n>" once it returned.
 */
#include "rsim_irq.h"
#include "rsim_printf.h"
#include "rsim_rpmsg.h"

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM); /* the board's loader expects one; unused here */

#define RATE_HZ 100u
#define WINDOW  100u

static volatile uint32_t ecalls;
static uint64_t first_us;

void rsim_irq_on_syscall(void) { ecalls++; }

void rsim_irq_on_tick(void)
{
    uint32_t n = rsim_timer_ticks;
    if (n == 1) {
        first_us = rsim_ticks_us();
    } else if ((n - 1) % WINDOW == 0) {
        uint64_t us = rsim_ticks_us() - first_us;
        rsim_printf("tick: %u ticks in %u us\n", n - 1, (uint32_t)us);
    }
}

int main(void)
{
    rsim_irq_init();
#if defined(__riscv)
    __asm__ volatile("ecall" ::: "memory");
#else
    __asm__ volatile("svc #0" ::: "memory");
#endif
    rsim_printf("tick: ecall %u\n", ecalls);
    rsim_printf("tick: ready\n");
    rsim_timer_start(RATE_HZ);
    rsim_irq_enable();
    for (;;)
        rsim_irq_wait();
}
