/*
 * fault-handler — faults on request, for a board with `faults: vectored`:
 * the firmware's own fault handlers run, read what the hardware recorded and
 * either recover (skip the faulting instruction and answer the host) or do
 * what real handlers do when they give up.
 *
 * Announces "fault"; each message names what to do:
 *   read      load from 0xDEADBEEF; the handler skips the load and the reply
 *             says what it saw ("read busfault cfsr 0x8200 bfar 0xdeadbeef",
 *             "read mcause 5 mtval 0xdeadbeef")
 *   undef     an undefined instruction ("undef usagefault cfsr 0x10000",
 *             "undef mcause 2 mtval 0x0")
 *   forced    (Cortex-M4) the load with BusFault disabled: HardFault with
 *             HFSR.FORCED ("forced hardfault hfsr 0x40000000 cfsr 0x8200")
 *   panic     the load; the handler PANICs with 0xFA17
 *   hang      the load; the handler never returns
 *   reset     (Cortex-M4) the load; the handler asks for a system reset (AIRCR)
 *   lockup    the load; the handler faults too
 *   badreturn (Cortex-M4) an interrupt handler that returns with a corrupt
 *             EXC_RETURN; the UsageFault handler (INVPC) PANICs with 0xFA17
 */
#include "rsim_printf.h"
#include "rsim_rpmsg.h"

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);

#define BAD_ADDRESS 0xDEADBEEFu

enum action { RECOVER, PANIC, HANG, RESET, LOCKUP };
static volatile enum action on_fault = RECOVER;
static char report[96];
static volatile int faults_seen;

static int equals(const void *data, uint32_t len, const char *word)
{
    uint32_t i = 0;
    for (; word[i]; i++)
        if (i >= len || ((const char *)data)[i] != word[i])
            return 0;
    return i == len;
}

static void bad_load(void)
{
    (void)*(volatile uint32_t *)(uintptr_t)BAD_ADDRESS;
}

/* What every handler does when not recovering. */
static void give_up(void)
{
    switch (on_fault) {
    case PANIC:
        rsim_panic(0xFA17u);
    case HANG:
        for (;;)
            ;
    case LOCKUP:
        bad_load();
        break;
    case RESET:
#if defined(__arm__)
        *(volatile uint32_t *)0xE000ED0Cu = 0x05FA0004u; /* AIRCR: VECTKEY | SYSRESETREQ */
        for (;;)
            ;
#endif
        break;
    case RECOVER:
        break;
    }
}

#if defined(__arm__)

#define SCB_SHCSR (*(volatile uint32_t *)0xE000ED24u)
#define SCB_CFSR  (*(volatile uint32_t *)0xE000ED28u)
#define SCB_HFSR  (*(volatile uint32_t *)0xE000ED2Cu)
#define SCB_BFAR  (*(volatile uint32_t *)0xE000ED38u)
#define NVIC_ISER0 (*(volatile uint32_t *)0xE000E100u)
#define NVIC_STIR (*(volatile uint32_t *)0xE000EF00u)
#define SHCSR_FAULTS (7u << 16) /* MemManage, BusFault, UsageFault enabled */

/* The length of the Thumb instruction at `pc`: 32 bits when its first halfword starts 0b111 01/10/11. */
static uint32_t thumb_length(uint32_t pc)
{
    uint16_t first = *(const uint16_t *)(uintptr_t)pc;
    return (first >> 11) >= 0x1D ? 4u : 2u;
}

/* Called with the exception frame (r0 r1 r2 r3 r12 lr pc xpsr). */
__attribute__((used)) void fault_c(uint32_t *frame, const char *kind)
{
    faults_seen++;
    give_up();
    uint32_t cfsr = SCB_CFSR, hfsr = SCB_HFSR;
    if (kind[0] == 'h')
        rsim_snprintf(report, sizeof report, "hardfault hfsr 0x%x cfsr 0x%x", hfsr, cfsr);
    else if (cfsr & (1u << 15))
        rsim_snprintf(report, sizeof report, "%s cfsr 0x%x bfar 0x%x", kind, cfsr, SCB_BFAR);
    else
        rsim_snprintf(report, sizeof report, "%s cfsr 0x%x", kind, cfsr);
    SCB_CFSR = cfsr; /* write one to clear */
    SCB_HFSR = hfsr;
    frame[6] += thumb_length(frame[6]);
}

/* The frame is on the stack EXC_RETURN (lr) names. */
#define FAULT_ENTRY(name, kind)                                                                    \
    __attribute__((naked)) void name(void)                                                         \
    {                                                                                              \
        __asm__ volatile("tst lr, #4\n ite eq\n mrseq r0, msp\n mrsne r0, psp\n"                   \
                         "ldr r1, =1f\n push {lr}\n bl fault_c\n pop {pc}\n"                       \
                         ".ltorg\n 1: .asciz \"" kind "\"\n .balign 2\n");                        \
    }
FAULT_ENTRY(rsim_hardfault_isr, "hardfault")
FAULT_ENTRY(rsim_busfault_isr, "busfault")
FAULT_ENTRY(rsim_usagefault_isr, "usagefault")
FAULT_ENTRY(rsim_memmanage_isr, "memmanage")

/* IRQ 1: returns through a corrupt EXC_RETURN. */
__attribute__((naked)) void bad_return_isr(void)
{
    __asm__ volatile("ldr r0, =0xFFFFFFE5\n bx r0\n .ltorg\n");
}

static void undefined(void) { __asm__ volatile("udf #0"); }

static void setup(void) { SCB_SHCSR |= SHCSR_FAULTS; }

/* IRQ 1's vector is crt0's default: point VTOR at a copy of the table with ours. */
static uint32_t table[48] __attribute__((aligned(256)));
static void bad_return(void)
{
    const uint32_t *vectors = (const uint32_t *)(uintptr_t)*(volatile uint32_t *)0xE000ED08u;
    for (int i = 0; i < 48; i++)
        table[i] = vectors[i];
    table[16 + 1] = (uint32_t)(uintptr_t)&bad_return_isr;
    *(volatile uint32_t *)0xE000ED08u = (uint32_t)(uintptr_t)table;
    NVIC_ISER0 = 1u << 1;
    NVIC_STIR = 1;
    __asm__ volatile("dsb\n isb" ::: "memory");
}

#else /* RV32 */

/* The trap entry: saves the caller-saved registers, lets C look at the trap,
 * restores them and returns to mepc (which the C code may have moved). */
__attribute__((used)) void trap_c(void)
{
    uint32_t cause, value, pc;
    __asm__ volatile("csrr %0, mcause\n csrr %1, mtval\n csrr %2, mepc" : "=r"(cause), "=r"(value), "=r"(pc));
    faults_seen++;
    give_up();
    rsim_snprintf(report, sizeof report, "mcause %u mtval 0x%x", cause, value);
    pc += (*(const uint16_t *)(uintptr_t)pc & 3u) == 3u ? 4u : 2u;
    __asm__ volatile("csrw mepc, %0" ::"r"(pc));
}

__attribute__((naked, aligned(4))) static void trap_entry(void)
{
    __asm__ volatile(
        "addi sp, sp, -64\n"
        "sw ra, 0(sp)\n sw t0, 4(sp)\n sw t1, 8(sp)\n sw t2, 12(sp)\n sw a0, 16(sp)\n sw a1, 20(sp)\n"
        "sw a2, 24(sp)\n sw a3, 28(sp)\n sw a4, 32(sp)\n sw a5, 36(sp)\n sw a6, 40(sp)\n sw a7, 44(sp)\n"
        "sw t3, 48(sp)\n sw t4, 52(sp)\n sw t5, 56(sp)\n sw t6, 60(sp)\n"
        "call trap_c\n"
        "lw ra, 0(sp)\n lw t0, 4(sp)\n lw t1, 8(sp)\n lw t2, 12(sp)\n lw a0, 16(sp)\n lw a1, 20(sp)\n"
        "lw a2, 24(sp)\n lw a3, 28(sp)\n lw a4, 32(sp)\n lw a5, 36(sp)\n lw a6, 40(sp)\n lw a7, 44(sp)\n"
        "lw t3, 48(sp)\n lw t4, 52(sp)\n lw t5, 56(sp)\n lw t6, 60(sp)\n"
        "addi sp, sp, 64\n"
        "mret\n");
}

static void undefined(void) { __asm__ volatile(".word 0"); }

static void setup(void) { __asm__ volatile("csrw mtvec, %0" ::"r"((uint32_t)(uintptr_t)&trap_entry)); }

#endif

static void on_message(struct rsim_rpmsg_ept *ept, const void *data, uint32_t len, uint32_t src,
                       void *priv)
{
    (void)priv;
    char reply[128];
    const char *name = 0;
    report[0] = 0;
    on_fault = RECOVER;
    if (equals(data, len, "read")) {
        name = "read";
        bad_load();
    } else if (equals(data, len, "undef")) {
        name = "undef";
        undefined();
    } else if (equals(data, len, "panic") || equals(data, len, "hang") || equals(data, len, "lockup")
               || equals(data, len, "reset")) {
        const char *w = (const char *)data;
        on_fault = w[0] == 'p' ? PANIC : w[0] == 'h' ? HANG : w[0] == 'l' ? LOCKUP : RESET;
        bad_load();
    }
#if defined(__arm__)
    else if (equals(data, len, "forced")) {
        name = "forced";
        SCB_SHCSR &= ~(1u << 17); /* BusFault disabled: it escalates */
        bad_load();
        SCB_SHCSR |= SHCSR_FAULTS;
    } else if (equals(data, len, "badreturn")) {
        on_fault = PANIC;
        bad_return();
    }
#endif
    if (!name) {
        (void)rsim_rpmsg_send(ept, src, "unknown", 7);
        return;
    }
    int n = rsim_snprintf(reply, sizeof reply, "%s %s", name, report);
    (void)rsim_rpmsg_send(ept, src, reply, (uint32_t)n);
}

int main(void)
{
    rsim_trace_attach(rsim_trace_buf, RSIM_TRACE_BUF_LEN);
    setup();
    (void)rsim_rpmsg_start_service(&rsim_rsc_table.vdev, "fault", on_message, 0);
    rsim_printf("fault-handler: ready\n");
    for (;;)
        rsim_rpmsg_wait_and_poll();
}
