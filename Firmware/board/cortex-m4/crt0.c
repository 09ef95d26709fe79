/*
 * crt0.c — start-up code for the rsim board, Cortex-M4 core.
 *
 * The core boots from the vector table at device address 0: SP = word 0,
 * PC = word 1 (Thumb). reset_handler copies .data from its load image in
 * CODE, zeroes .bss, calls main() and then idles on the mailbox WAIT
 * register if main returns.
 *
 * The system vectors without a handler of rsim_irq.c point to one that
 * reports a panic, so the table is also sane on a real core.
 */
#include "crt0_common.h"

#define RSIM_PANIC_EXCEPTION 0xE0000000u /* | exception number */

__attribute__((noreturn, used, section(".text.reset_handler"))) void reset_handler(void);

__attribute__((noreturn)) static void default_handler(void)
{
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    rsim_panic(RSIM_PANIC_EXCEPTION | (ipsr & 0x1FFu));
}

typedef void (*vector_t)(void);

/* Interrupt handlers of rsim_irq.c (Firmware/lib); a program built without it
 * gets the panicking default. */
void rsim_irq_svc_isr(void) __attribute__((weak, alias("default_handler")));
void rsim_irq_pendsv_isr(void) __attribute__((weak, alias("default_handler")));
void rsim_irq_systick_isr(void) __attribute__((weak, alias("default_handler")));
void rsim_irq_mailbox_isr(void) __attribute__((weak, alias("default_handler")));
/* Fault handlers a program may define (with the board's `faults: vectored`). */
void rsim_hardfault_isr(void) __attribute__((weak, alias("default_handler")));
void rsim_memmanage_isr(void) __attribute__((weak, alias("default_handler")));
void rsim_busfault_isr(void) __attribute__((weak, alias("default_handler")));
void rsim_usagefault_isr(void) __attribute__((weak, alias("default_handler")));

#define RSIM_EXTERNAL_IRQS 32

/* Initial SP, reset, the Cortex-M system exception vectors and 32 external
 * interrupts (0: the mailbox). Addresses of Thumb functions have bit 0 set. */
__attribute__((used, section(".vectors"))) const vector_t rsim_vectors[16 + RSIM_EXTERNAL_IRQS] = {
    (vector_t)(uintptr_t)_stack_top, /*  0: initial SP = top of sram */
    reset_handler,                   /*  1: reset */
    default_handler,                 /*  2: NMI */
    rsim_hardfault_isr,              /*  3: HardFault */
    rsim_memmanage_isr,              /*  4: MemManage */
    rsim_busfault_isr,               /*  5: BusFault */
    rsim_usagefault_isr,             /*  6: UsageFault */
    0, 0, 0, 0,                      /*  7-10: reserved */
    rsim_irq_svc_isr,                /* 11: SVCall */
    default_handler,                 /* 12: DebugMonitor */
    0,                               /* 13: reserved */
    rsim_irq_pendsv_isr,             /* 14: PendSV */
    rsim_irq_systick_isr,            /* 15: SysTick */
    rsim_irq_mailbox_isr,            /* 16: IRQ 0, the mailbox */
    [17 ... 16 + RSIM_EXTERNAL_IRQS - 1] = default_handler,
};

void reset_handler(void)
{
    rsim_c_runtime_start();
}
