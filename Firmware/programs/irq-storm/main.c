/*
 * irq-storm — an interrupt that never stops: its handler raises it again before returning
 * (Cortex-M4: IRQ 1 pends itself through STIR; RV32: the software interrupt handler leaves msip
 * set). The firmware arms a 100 ms watchdog and kicks it only from thread code, which the storm
 * never lets run again: the host sees a watchdog crash, and can stop the core at any time.
 * Prints "irq-storm: storming" first and counts the handler's runs in `storm_count`.
 */
#include "rsim_irq.h"
#include "rsim_printf.h"
#include "rsim_rpmsg.h"

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);

volatile uint32_t storm_count;

#if defined(__arm__)
#define NVIC_ISER0 (*(volatile uint32_t *)0xE000E100u)
#define NVIC_STIR  (*(volatile uint32_t *)0xE000EF00u)
#define SCB_VTOR   (*(volatile uint32_t *)0xE000ED08u)

static void storm_isr(void)
{
    storm_count++;
    NVIC_STIR = 1; /* again */
}

/* IRQ 1's vector is crt0's default: a copy of the table with ours, through VTOR. */
static uint32_t table[48] __attribute__((aligned(256)));

static void start_storm(void)
{
    const uint32_t *vectors = (const uint32_t *)(uintptr_t)SCB_VTOR;
    for (int i = 0; i < 48; i++)
        table[i] = vectors[i];
    table[16 + 1] = (uint32_t)(uintptr_t)&storm_isr;
    SCB_VTOR = (uint32_t)(uintptr_t)table;
    NVIC_ISER0 = 1u << 1;
    NVIC_STIR = 1;
    __asm__ volatile("dsb\n isb" ::: "memory");
}
#else
void rsim_irq_on_software(void)
{
    storm_count++;
    rsim_irq_raise_software(); /* again (the library cleared msip before calling) */
}

static void start_storm(void)
{
    rsim_irq_init();
    rsim_irq_enable();
    rsim_irq_raise_software();
}
#endif

int main(void)
{
    rsim_printf("irq-storm: storming\n");
    rsim_watchdog(100);
    start_storm();
    for (;;)
        rsim_watchdog(100); /* never again: the storm keeps the core in the handler */
}
