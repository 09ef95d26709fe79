/*
 * irq-prio — checks the emulated core's interrupt rules on the hardware
 * itself: no scheduler and no rsim_irq (the program owns its vectors: on the
 * Cortex-M4 a vector table of its own through VTOR, on RV32 a trap entry of
 * its own in mtvec), so crt0 and Firmware/lib stay as they are.
 *
 * Handlers record what ran in an event log: "+N" on entry, "-N" on exit
 * (N: the IRQ number on the Cortex-M4, P PendSV, T SysTick / the machine
 * timer, S the machine software interrupt, E the machine external one);
 * thread code adds lower-case marks between steps. One console line per
 * check, in a fixed format:
 *
 *   irq-prio: <arch> start                        <arch>: cortex-m4 or rv32
 *   irq-prio: <check> <observed> ok
 *   irq-prio: <check> <observed> FAIL want <expected>
 *   irq-prio: <check> skipped (no host kick)      not counted
 *   irq-prio: done <passed>/<total>               15/15 (Cortex-M4), 10/10 (RV32)
 *
 * <check>, <observed> and <expected> contain no spaces. In order:
 *   Cortex-M4: mailbox-irq0 preempt same-prio subprio simultaneous masking
 *     tail-chain wfi-primask nvic-active context psp handler-chain
 *     equal-prio-order pend-state deep-nesting
 *   RV32: external-order simultaneous masking no-preempt nesting back-to-back
 *     wfi trap-csrs vectored clint-levels
 * The first check of each uses the mailbox interrupt with the kick a Linux
 * host makes after DRIVER_OK (vring 0) as a real external level; without a
 * kick within 1 s it is skipped. The program acknowledges kicks afterwards
 * and idles on WAIT once done.
 */
#include <stdarg.h>
#include <stdint.h>

#include "rsim.h"
#include "rsim_printf.h"
#include "rsim_rpmsg.h"

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM); /* the board's loader expects one; unused here */

#define REG32(address) (*(volatile uint32_t *)(uintptr_t)(address))
#define REG8(address)  (*(volatile uint8_t *)(uintptr_t)(address))

/* PANIC code for a trap no check expects: | the Cortex-M4 exception number,
 * or the RV32 mcause code (| 0x8000 for an interrupt). */
#define PANIC_IRQ_PRIO 0x1B100000u

/* ------------------------------------------------------------------------ */
/* The event log and the report                                              */
/* ------------------------------------------------------------------------ */

#define LOG_MAX 96u
static volatile char event_log[LOG_MAX];
static volatile uint32_t event_len;

static void log_char(char c)
{
    uint32_t n = event_len;
    if (n < LOG_MAX - 1u) {
        event_log[n] = c;
        event_len = n + 1u;
    }
}

/* A handler's entry ('+') or exit ('-'). */
static void log_event(char kind, char id)
{
    log_char(kind);
    log_char(id);
}

/* A thread-mode mark. */
static void mark(char c)
{
    __asm__ volatile("" ::: "memory");
    log_char(c);
    __asm__ volatile("" ::: "memory");
}

static void log_reset(void) { event_len = 0; }

/* Findings beyond the log (registers read back, counters), appended to it. */
static char notes[160];
static uint32_t notes_len;

RSIM_PRINTF_FORMAT(1, 2) static void note(const char *fmt, ...)
{
    if (notes_len >= sizeof notes - 1u)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = rsim_vsnprintf(notes + notes_len, sizeof notes - notes_len, fmt, ap);
    va_end(ap);
    notes_len += n > 0 ? (uint32_t)n : 0u;
    if (notes_len > sizeof notes - 1u)
        notes_len = sizeof notes - 1u;
}

#define note_if(wrong, ...)       \
    do {                          \
        if (wrong)                \
            note(__VA_ARGS__);    \
    } while (0)

static uint32_t checks_passed, checks_total;

static int same(const char *a, const char *b)
{
    while (*a != '\0' && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

static void report(const char *name, const char *observed, const char *expected)
{
    checks_total++;
    if (same(observed, expected)) {
        checks_passed++;
        rsim_printf("irq-prio: %s %s ok\n", name, observed);
    } else {
        rsim_printf("irq-prio: %s %s FAIL want %s\n", name, observed, expected);
    }
}

/* Reports the log (plus any notes) against the expected log; resets both. */
static void report_log(const char *name, const char *expected)
{
    char observed[LOG_MAX + sizeof notes];
    uint32_t n = event_len, i = 0;
    for (; i < n && i < LOG_MAX; i++)
        observed[i] = event_log[i];
    if (i == 0)
        observed[i++] = '_'; /* nothing ran: no empty field */
    for (uint32_t k = 0; k < notes_len; k++)
        observed[i++] = notes[k];
    observed[i] = '\0';
    report(name, observed, expected);
    log_reset();
    notes_len = 0;
    notes[0] = '\0';
}

static void spin(uint32_t n)
{
    for (volatile uint32_t i = 0; i < n; i++) {
    }
}

/* The Linux host kicks once after DRIVER_OK; an unacknowledged kick makes every
 * wfi return at once (the board's version-1 rule). Nothing here uses RPMsg. */
static void ack_host_kicks(void)
{
    uint32_t pending = rsim_pending();
    if (pending != 0)
        rsim_ack(pending);
}

/* The Linux host kicks vring 0 once after DRIVER_OK, before the core has
 * come far: the mailbox-interrupt checks use that kick (PENDING bit) as a
 * real external level. Waits at most 1 s; returns the PENDING bits. */
static uint32_t wait_host_kick(void)
{
    uint32_t pending = rsim_pending();
    for (uint32_t i = 0; pending == 0 && i < 1000u; i++) {
        rsim_sleep_us(1000); /* returns early once PENDING != 0 */
        pending = rsim_pending();
    }
    return pending;
}

/* Core-clock cycles in 1 ms (at least 2: a 1 kHz core still gets a tick). */
static uint32_t cycles_per_ms(void)
{
    uint32_t n = rsim_core_clock_hz() / 1000u;
    return n < 2u ? 2u : n;
}

#define SPIN_HOLD 20000u   /* iterations a held interrupt must stay held */
#define WAIT_LIMIT 200000u /* bound of every wait for something to happen */

#if defined(__arm__)

/* ======================================================================== */
/* Cortex-M4: the ARMv7-M exception model                                   */
/* ======================================================================== */

#define NVIC_ISER  0xE000E100u
#define NVIC_ICER  0xE000E180u
#define NVIC_ISPR  0xE000E200u
#define NVIC_ICPR  0xE000E280u
#define NVIC_IABR  0xE000E300u
#define NVIC_IPR   0xE000E400u
#define NVIC_STIR  0xE000EF00u
#define SCB_ICSR   0xE000ED04u
#define SCB_VTOR   0xE000ED08u
#define SCB_AIRCR  0xE000ED0Cu
#define SCB_SHPR3  0xE000ED20u
#define SYST_CSR   0xE000E010u
#define SYST_RVR   0xE000E014u
#define SYST_CVR   0xE000E018u

#define ICSR_PENDSVSET  (1u << 28)
#define ICSR_PENDSVCLR  (1u << 27)
#define ICSR_PENDSTSET  (1u << 26)
#define ICSR_PENDSTCLR  (1u << 25)
#define ICSR_ISRPENDING (1u << 22)
#define ICSR_RETTOBASE  (1u << 11)
#define ICSR_VECTPENDING(icsr) (((icsr) >> 12) & 0x1FFu)
#define ICSR_VECTACTIVE(icsr)  ((icsr) & 0x1FFu)

#define AIRCR_VECTKEY 0x05FA0000u
#define TEST_IRQS     0x3FEu /* IRQs 1..9; IRQ 0 (the mailbox) stays off */

static inline void barrier(void) { __asm__ volatile("dsb\n isb" ::: "memory"); }
static inline void irq_off(void) { __asm__ volatile("cpsid i" ::: "memory"); }
static inline void irq_on(void) { __asm__ volatile("cpsie i\n isb" ::: "memory"); }
static inline void fault_off(void) { __asm__ volatile("cpsid f" ::: "memory"); }
static inline void fault_on(void) { __asm__ volatile("cpsie f\n isb" ::: "memory"); }
static inline void set_basepri(uint32_t v) { __asm__ volatile("msr basepri, %0\n isb" ::"r"(v) : "memory"); }

static inline uint32_t read_ipsr(void)
{
    uint32_t v;
    __asm__ volatile("mrs %0, ipsr" : "=r"(v));
    return v;
}

/* Pends IRQ n through the software trigger register; DSB + ISB: what it lets in is taken here. */
static void pend(uint32_t n)
{
    REG32(NVIC_STIR) = n;
    barrier();
}

static void set_priority(uint32_t irq, uint8_t priority) { REG8(NVIC_IPR + irq) = priority; }

static void set_system_priorities(uint8_t pendsv, uint8_t systick)
{
    REG32(SCB_SHPR3) = (REG32(SCB_SHPR3) & 0x0000FFFFu) | (uint32_t)pendsv << 16 | (uint32_t)systick << 24;
}

/* What a handler does between its "+N" and "-N". */
typedef void (*action_t)(void);
static volatile action_t irq_action[32];
static volatile action_t pendsv_action;
static volatile uint32_t systick_runs;
static volatile uint32_t exc_return_seen[32]; /* LR (EXC_RETURN) at each IRQ's entry */

static char id_char(uint32_t irq) { return irq < 10u ? (char)('0' + irq) : '?'; }

/* Each IRQ's vector: the EXC_RETURN in LR is handed to the C handler, which
 * returns through it (a tail call keeps LR). */
__attribute__((naked)) void irqprio_m4_irq_entry(void)
{
    __asm__ volatile("mov r0, lr\n"
                     "b irqprio_m4_irq\n");
}

__attribute__((used)) void irqprio_m4_irq(uint32_t exc_return)
{
    uint32_t irq = (read_ipsr() & 0x1FFu) - 16u;
    if (irq >= 32u)
        rsim_panic(PANIC_IRQ_PRIO | (read_ipsr() & 0x1FFu));
    exc_return_seen[irq] = exc_return;
    log_event('+', id_char(irq));
    action_t action = irq_action[irq];
    if (action != 0)
        action();
    log_event('-', id_char(irq));
}

static void pendsv_handler(void)
{
    log_event('+', 'P');
    action_t action = pendsv_action;
    if (action != 0)
        action();
    log_event('-', 'P');
}

static void systick_handler(void)
{
    log_event('+', 'T');
    REG32(SYST_CSR) = 0; /* one tick is all a check needs */
    systick_runs++;
    log_event('-', 'T');
}

static void unexpected_exception(void)
{
    uint32_t ipsr = read_ipsr() & 0x1FFu;
    rsim_printf("irq-prio: unexpected exception %u\n", ipsr);
    rsim_panic(PANIC_IRQ_PRIO | ipsr);
}

typedef void (*vector_t)(void);
extern uint32_t _stack_top[];

/* The program's own table (VTOR): 16 system vectors and 32 IRQs; 48 words
 * need 256-byte alignment. */
__attribute__((aligned(256))) static const vector_t irqprio_vectors[16 + 32] = {
    (vector_t)(uintptr_t)_stack_top,
    unexpected_exception, /* reset (not used through VTOR) */
    unexpected_exception, /* NMI */
    unexpected_exception, /* HardFault */
    unexpected_exception, /* MemManage */
    unexpected_exception, /* BusFault */
    unexpected_exception, /* UsageFault */
    0, 0, 0, 0,
    unexpected_exception, /* SVCall */
    unexpected_exception, /* DebugMonitor */
    0,
    pendsv_handler,
    systick_handler,
    [16 ... 47] = irqprio_m4_irq_entry,
};

/* Back to a known state between checks: nothing pending, no actions, masks clear. */
static void quiesce(void)
{
    irq_off();
    REG32(NVIC_ICPR) = 0xFFFFFFFFu;
    REG32(SCB_ICSR) = ICSR_PENDSVCLR | ICSR_PENDSTCLR;
    for (uint32_t i = 0; i < 32u; i++)
        irq_action[i] = 0;
    pendsv_action = 0;
    set_basepri(0);
    fault_on();
    barrier();
    log_reset();
    irq_on();
}

/* 1. A more urgent IRQ pended by a handler preempts it. */
static void pend_2(void) { pend(2); }

static void check_preempt(void)
{
    set_priority(1, 0x80);
    set_priority(2, 0x40);
    irq_action[1] = pend_2;
    pend(1);
    report_log("preempt", "+1+2-2-1");
}

/* 2. The same priority does not preempt: IRQ 4 waits for IRQ 3 to return. */
static void pend_4(void)
{
    pend(4);
    spin(1000);
}

static void check_same_priority(void)
{
    set_priority(3, 0x80);
    set_priority(4, 0x80);
    irq_action[3] = pend_4;
    pend(3);
    report_log("same-prio", "+3-3+4-4");
}

/* 3. AIRCR.PRIGROUP 4: bits [7:5] are the group, so 0x40 and 0x50 share one;
 * neither preempts the other, pended together the smaller subpriority runs
 * first (IRQ 6, though IRQ 5 has the lower number), and BASEPRI 0x50 masks
 * by group (holds 0x40). With PRIGROUP 0 again the same pend preempts. */
static void pend_6(void) { pend(6); }

static void check_subpriority(void)
{
    set_priority(5, 0x50);
    set_priority(6, 0x40);
    REG32(SCB_AIRCR) = AIRCR_VECTKEY | 4u << 8;
    barrier();
    uint32_t group = (REG32(SCB_AIRCR) >> 8) & 7u;
    note_if(group != 4u, ",prigroup=%u", group);

    irq_action[5] = pend_6;
    pend(5); /* +5-5+6-6: 0x40 does not preempt 0x50 */
    irq_action[5] = 0;

    irq_off();
    REG32(NVIC_ISPR) = 1u << 5 | 1u << 6;
    barrier();
    mark('a');
    irq_on(); /* +6-6+5-5: the subpriority decides */

    set_basepri(0x50); /* masks by group too: holds 0x40 */
    pend(6);
    spin(SPIN_HOLD);
    mark('b');
    set_basepri(0); /* +6-6 */

    REG32(SCB_AIRCR) = AIRCR_VECTKEY | 0u << 8;
    barrier();
    group = (REG32(SCB_AIRCR) >> 8) & 7u;
    note_if(group != 0u, ",prigroup-after=%u", group);
    mark('c');
    irq_action[5] = pend_6;
    pend(5); /* +5+6-6-5: separate groups again */
    report_log("subprio", "+5-5+6-6a+6-6+5-5b+6-6c+5+6-6-5");
}

/* 4. Pended together while PRIMASK is set, they run most urgent first once it
 * clears; equal priorities by exception number. VECTPENDING shows the first. */
static void check_simultaneous(void)
{
    set_priority(1, 0xC0);
    set_priority(2, 0x40);
    set_priority(3, 0x80);
    set_priority(4, 0x40);
    irq_off();
    REG32(NVIC_ISPR) = 1u << 1 | 1u << 2 | 1u << 3 | 1u << 4;
    barrier();
    uint32_t icsr = REG32(SCB_ICSR);
    note_if(ICSR_VECTPENDING(icsr) != 18u, ",vectpending=%u", ICSR_VECTPENDING(icsr));
    note_if((icsr & ICSR_ISRPENDING) == 0, ",isrpending=0");
    mark('a');
    irq_on();
    report_log("simultaneous", "a+2-2+4-4+3-3+1-1");
}

/* 5. PRIMASK holds, CPSIE lets in before the next instruction; BASEPRI 0x60
 * holds 0x80 but not 0x20, BASEPRI 0x80 still holds 0x80, BASEPRI 0
 * releases it; FAULTMASK holds even priority 0, and an exception return
 * clears a FAULTMASK its handler set. */
static void set_faultmask(void) { fault_off(); }

static inline uint32_t read_faultmask(void)
{
    uint32_t v;
    __asm__ volatile("mrs %0, faultmask" : "=r"(v));
    return v;
}

static void check_masking(void)
{
    set_priority(6, 0x80);
    set_priority(7, 0x80);
    set_priority(8, 0x20);
    set_priority(9, 0x00);

    irq_off();
    pend(6);
    spin(SPIN_HOLD);
    note_if((REG32(NVIC_ISPR) & 1u << 6) == 0, ",ispr6=0");
    mark('a');
    irq_on(); /* +6-6 */
    mark('b');

    set_basepri(0x60);
    pend(7); /* held */
    spin(SPIN_HOLD);
    mark('c');
    pend(8); /* +8-8 */
    mark('d');
    set_basepri(0x80); /* equal: still held */
    spin(SPIN_HOLD);
    mark('e');
    set_basepri(0); /* +7-7 */
    mark('f');

    fault_off();
    pend(9); /* held even at priority 0 */
    spin(SPIN_HOLD);
    mark('g');
    fault_on(); /* +9-9 */
    mark('h');

    irq_action[9] = set_faultmask; /* an exception return clears FAULTMASK */
    pend(9);
    note_if(read_faultmask() != 0, ",faultmask-after-return=1");
    fault_on();
    report_log("masking", "a+6-6bc+8-8de+7-7fg+9-9h+9-9");
}

/* 6. Tail-chaining: IRQ 5 pends PendSV (the lowest priority); PendSV runs
 * straight after IRQ 5, before thread code resumes: a counter the thread
 * increments is the same at IRQ 5's exit and PendSV's entry. */
static volatile uint32_t thread_counter, counter_at_irq_exit, counter_at_pendsv, pendsv_done;

static void irq5_pends_pendsv(void)
{
    REG32(SCB_ICSR) = ICSR_PENDSVSET;
    barrier();
    spin(1000);
    counter_at_irq_exit = thread_counter;
}

static void pendsv_records(void)
{
    counter_at_pendsv = thread_counter;
    pendsv_done = 1;
}

static void check_tail_chain(void)
{
    set_priority(5, 0x80);
    set_system_priorities(0xF0, 0x80);
    irq_action[5] = irq5_pends_pendsv;
    pendsv_action = pendsv_records;
    thread_counter = 0;
    counter_at_irq_exit = counter_at_pendsv = 0xFFFFFFFFu;
    pendsv_done = 0;
    while (!pendsv_done && thread_counter < WAIT_LIMIT) {
        thread_counter++;
        if (thread_counter == 1000u)
            pend(5);
    }
    note_if(counter_at_irq_exit != 1000u, ",irq5-exit-count=%u", counter_at_irq_exit);
    note_if(counter_at_pendsv != counter_at_irq_exit, ",pendsv-count=%u", counter_at_pendsv);
    report_log("tail-chain", "+5-5+P-P");
}

/* 7. WFI with PRIMASK set wakes when SysTick becomes pending (ICSR.PENDSTSET);
 * the handler runs only at CPSIE, once. */
static void check_wfi_primask(void)
{
    irq_off();
    systick_runs = 0;
    REG32(SYST_CSR) = 0;
    REG32(SYST_RVR) = cycles_per_ms() - 1u; /* 1 ms */
    REG32(SYST_CVR) = 0;
    REG32(SYST_CSR) = 7u; /* enable, TICKINT, core clock */
    uint32_t wakes = 0;
    while ((REG32(SCB_ICSR) & ICSR_PENDSTSET) == 0 && wakes < WAIT_LIMIT) {
        ack_host_kicks();
        __asm__ volatile("wfi" ::: "memory");
        wakes++;
    }
    /* Stop the counter (the pended exception stays pending): the core's time
     * is the host's, so a busy host could let another period pass before the
     * handler runs. */
    REG32(SYST_CSR) = 0;
    uint32_t icsr = REG32(SCB_ICSR);
    note_if((icsr & ICSR_PENDSTSET) == 0, ",pendst-after-wfi=0");
    note_if(systick_runs != 0, ",ran-masked=%u", systick_runs);
    mark('a');
    irq_on(); /* +T-T */
    mark('b');
    icsr = REG32(SCB_ICSR);
    note_if((icsr & ICSR_PENDSTSET) != 0, ",pendst-after-handler=1");
    report_log("wfi-primask", "a+T-Tb");
}

/* 8. NVIC bookkeeping: IABR, ICSR.VECTACTIVE and RETTOBASE inside IRQ 1 and
 * inside IRQ 2 nested in it; EXC_RETURN; all clear after the return. */
static volatile uint32_t iabr_in1, icsr_in1, ispr_in1, iabr_in2, icsr_in2;

static void record_in2(void)
{
    iabr_in2 = REG32(NVIC_IABR);
    icsr_in2 = REG32(SCB_ICSR);
}

static void record_in1(void)
{
    iabr_in1 = REG32(NVIC_IABR);
    icsr_in1 = REG32(SCB_ICSR);
    ispr_in1 = REG32(NVIC_ISPR);
    pend(2);
}

static void check_nvic_active(void)
{
    set_priority(1, 0x80);
    set_priority(2, 0x40);
    irq_action[1] = record_in1;
    irq_action[2] = record_in2;
    pend(1);
    uint32_t iabr_out = REG32(NVIC_IABR), icsr_out = REG32(SCB_ICSR);
    char observed[200];
    rsim_snprintf(observed, sizeof observed,
                  "in1:iabr=0x%x,va=%u,rtb=%u,ispr=0x%x,lr=0x%x;in2:iabr=0x%x,va=%u,rtb=%u,lr=0x%x;out:iabr=0x%x,va=%u",
                  iabr_in1, ICSR_VECTACTIVE(icsr_in1), (icsr_in1 & ICSR_RETTOBASE) != 0, ispr_in1, exc_return_seen[1],
                  iabr_in2, ICSR_VECTACTIVE(icsr_in2), (icsr_in2 & ICSR_RETTOBASE) != 0, exc_return_seen[2], iabr_out,
                  ICSR_VECTACTIVE(icsr_out));
    report("nvic-active", observed,
           "in1:iabr=0x2,va=17,rtb=1,ispr=0x0,lr=0xfffffff9;in2:iabr=0x6,va=18,rtb=0,lr=0xfffffff1;out:iabr=0x0,va=0");
    log_reset();
}

/* 9. The context an exception saves and restores: r0-r3, r12, lr, the APSR
 * flags (N C Q set, Z V clear) and sp survive an IRQ whose handler trashes
 * them, with sp 8-byte aligned and with sp 4 off (STKALIGN padding). */
struct context_out {
    uint32_t r[5];
    uint32_t lr;
    uint32_t apsr;
    uint32_t sp_before;
    uint32_t sp_after;
};

__attribute__((naked)) static void context_probe(struct context_out *out, uint32_t misalign, uint32_t irq)
{
    __asm__ volatile(
        "push {r4-r8, lr}\n"
        "mov r4, r0\n"
        "mov r8, r1\n"
        "mov r7, r2\n"           /* the IRQ to pend */
        "cbz r1, 1f\n"
        "sub sp, sp, #4\n"
        "1:\n"
        "mov r5, sp\n"
        "str r5, [r4, #28]\n"
        "movw r6, #0xEF00\n"
        "movt r6, #0xE000\n"      /* STIR */
        "movw r0, #0x1010\n  movt r0, #0x1010\n"
        "movw r1, #0x2121\n  movt r1, #0x2121\n"
        "movw r2, #0x3232\n  movt r2, #0x3232\n"
        "movw r3, #0x4343\n  movt r3, #0x4343\n"
        "movw r12, #0x5454\n movt r12, #0x5454\n"
        "movw lr, #0x6565\n  movt lr, #0x6565\n"
        "movw r5, #0\n       movt r5, #0xA800\n" /* N, C, Q */
        "msr APSR_nzcvq, r5\n"
        "str r7, [r6]\n"
        "dsb\n"
        "isb\n"
        "mrs r5, APSR\n"
        "str r0, [r4, #0]\n"
        "str r1, [r4, #4]\n"
        "str r2, [r4, #8]\n"
        "str r3, [r4, #12]\n"
        "str r12, [r4, #16]\n"
        "str lr, [r4, #20]\n"
        "str r5, [r4, #24]\n"
        "mov r5, sp\n"
        "str r5, [r4, #32]\n"
        "cmp r8, #0\n"
        "beq 2f\n"
        "add sp, sp, #4\n"
        "2:\n"
        "pop {r4-r8, pc}\n");
}

static void trash_caller_saved(void)
{
    __asm__ volatile("movw r0, #0xBEEF\n movt r0, #0xDEAD\n"
                     "mov r1, r0\n mov r2, r0\n mov r3, r0\n mov r12, r0\n"
                     "movs r0, #0\n"
                     "msr APSR_nzcvq, r0\n" /* Z only */
                     ::: "r0", "r1", "r2", "r3", "r12", "cc", "memory");
}

static void context_run(uint32_t misalign, uint32_t irq, const char *tag)
{
    struct context_out out; /* every field written by the probe */
    context_probe(&out, misalign, irq);
    static const uint32_t want[5] = {0x10101010u, 0x21212121u, 0x32323232u, 0x43434343u, 0x54545454u};
    for (uint32_t i = 0; i < 5u; i++)
        note_if(out.r[i] != want[i], ",%s-r%u=0x%x", tag, i < 4u ? i : 12u, out.r[i]);
    note_if(out.lr != 0x65656565u, ",%s-lr=0x%x", tag, out.lr);
    note_if((out.apsr & 0xF8000000u) != 0xA8000000u, ",%s-apsr=0x%x", tag, out.apsr);
    note_if(out.sp_before != out.sp_after, ",%s-sp=0x%x/0x%x", tag, out.sp_before, out.sp_after);
    note_if(((out.sp_before & 4u) != 0) != (misalign != 0), ",%s-setup-sp=0x%x", tag, out.sp_before);
}

static void trash_then_pend_pendsv(void)
{
    trash_caller_saved();
    REG32(SCB_ICSR) = ICSR_PENDSVSET;
    barrier();
}

/* Inside IRQ 3: the same probes in Handler mode (frames on the main stack, EXC_RETURN 0xFFFFFFF1). */
static void probe_in_handler(void)
{
    context_run(0, 4, "nested-aligned");
    context_run(1, 4, "nested-padded");
}

static void check_context(void)
{
    set_priority(1, 0x80);
    irq_action[1] = trash_caller_saved;
    context_run(0, 1, "aligned");
    context_run(1, 1, "padded");
    irq_action[1] = trash_then_pend_pendsv; /* returns by tail-chaining into PendSV */
    pendsv_action = trash_caller_saved;
    set_system_priorities(0xF0, 0x80);
    context_run(1, 1, "chained");
    set_priority(3, 0xC0);
    set_priority(4, 0x40);
    irq_action[3] = probe_in_handler;
    irq_action[4] = trash_caller_saved;
    pend(3);
    report_log("context", "+1-1+1-1+1-1+P-P+3+4-4+4-4-3");
}

/* 10. Thread mode on the process stack: the frame goes on PSP, the handler
 * runs on MSP with EXC_RETURN 0xFFFFFFFD, and the return restores PSP, the
 * registers and CONTROL.SPSEL. */
static uint32_t process_stack[64] __attribute__((aligned(8)));
static volatile uint32_t psp_lr, psp_sp, psp_psp, psp_control;

__attribute__((naked)) static void psp_probe(uint32_t *psp_top, uint32_t *out)
{
    __asm__ volatile(
        "push {r4-r7, lr}\n"
        "mov r7, r1\n"
        "mrs r4, control\n"
        "msr psp, r0\n"
        "orr r5, r4, #2\n"
        "msr control, r5\n"       /* Thread mode on PSP from here */
        "isb\n"
        "mov r5, sp\n  str r5, [r7, #0]\n"
        "movw r6, #0xEF00\n movt r6, #0xE000\n"
        "mov r5, #1\n"
        "movw r0, #0x1111\n movt r0, #0x1111\n"
        "movw r1, #0x2222\n movt r1, #0x2222\n"
        "movw r2, #0x3333\n movt r2, #0x3333\n"
        "movw r3, #0x4444\n movt r3, #0x4444\n"
        "str r5, [r6]\n  dsb\n  isb\n"  /* IRQ 1 */
        "str r0, [r7, #4]\n  str r1, [r7, #8]\n  str r2, [r7, #12]\n  str r3, [r7, #16]\n"
        "mov r5, sp\n  str r5, [r7, #20]\n"
        "mrs r5, control\n  str r5, [r7, #24]\n"
        "msr control, r4\n"       /* back on MSP */
        "isb\n"
        "pop {r4-r7, pc}\n");
}

static void record_stacks(void)
{
    uint32_t sp, psp, control;
    __asm__ volatile("mov %0, sp\n mrs %1, psp\n mrs %2, control" : "=r"(sp), "=r"(psp), "=r"(control));
    psp_lr = exc_return_seen[1];
    psp_sp = sp;
    psp_psp = psp;
    psp_control = control;
    trash_caller_saved();
}

static void check_psp(void)
{
    set_priority(1, 0x80);
    irq_action[1] = record_stacks;
    uint32_t out[7];
    uint32_t top = (uint32_t)(uintptr_t)&process_stack[64];
    psp_probe(&process_stack[64], out);
    note_if(out[0] != top, ",thread-sp=0x%x", out[0]);
    note_if(out[1] != 0x11111111u || out[2] != 0x22222222u || out[3] != 0x33333333u || out[4] != 0x44444444u,
            ",regs=%x/%x/%x/%x", out[1], out[2], out[3], out[4]);
    note_if(out[5] != top, ",sp-after=0x%x", out[5]);
    note_if(out[6] != 2u, ",control-after=%u", out[6]);
    note_if(psp_lr != 0xFFFFFFFDu, ",lr=0x%x", psp_lr);
    note_if(psp_psp != top - 32u, ",frame-at=0x%x", psp_psp);
    note_if((psp_control & 2u) != 0, ",handler-control=%u", psp_control);
    note_if(psp_sp >= (uint32_t)(uintptr_t)process_stack && psp_sp <= top, ",handler-on-psp");
    report_log("psp", "+1-1");
}

/* 11. Tail-chaining from a nested handler: IRQ 2 (inside IRQ 1) pends IRQ 3;
 * at 0x60 it preempts IRQ 1 and runs before IRQ 1 resumes, at 0xC0 it waits
 * until IRQ 1 returns. */
static void pend_3(void) { pend(3); }

static void check_handler_chain(void)
{
    set_priority(1, 0x80);
    set_priority(2, 0x40);
    set_priority(3, 0x60);
    irq_action[1] = pend_2;
    irq_action[2] = pend_3;
    pend(1);
    mark('a');
    set_priority(3, 0xC0);
    pend(1);
    report_log("handler-chain", "+1+2-2+3-3-1a+1+2-2-1+3-3");
}

/* 12. Equal priorities, pended together: the lower exception number first
 * (PendSV 14, SysTick 15, IRQ 0 16 ...); VECTPENDING names PendSV. */
static void check_equal_priority_order(void)
{
    set_priority(1, 0x80);
    set_system_priorities(0x80, 0x80);
    irq_off();
    REG32(NVIC_ISPR) = 1u << 1;
    REG32(SCB_ICSR) = ICSR_PENDSTSET;
    REG32(SCB_ICSR) = ICSR_PENDSVSET;
    barrier();
    uint32_t vp = ICSR_VECTPENDING(REG32(SCB_ICSR));
    note_if(vp != 14u, ",vectpending=%u", vp);
    irq_on();
    set_system_priorities(0xF0, 0x80);
    report_log("equal-prio-order", "+P-P+T-T+1-1");
}

/* 13. Pending state: a disabled IRQ stays pending (ISPR) and runs when enabled;
 * ICPR withdraws a pended one; an IRQ pended again by its own handler runs
 * again after it returns (not nested). */
static volatile uint32_t repends;

static void pend_self_once(void)
{
    if (repends++ == 0)
        pend(1);
}

static void check_pend_state(void)
{
    set_priority(1, 0x80);
    REG32(NVIC_ICER) = 1u << 1;
    pend(1);
    spin(SPIN_HOLD);
    note_if((REG32(NVIC_ISPR) & 1u << 1) == 0, ",ispr1=0");
    mark('a');
    REG32(NVIC_ISER) = 1u << 1; /* +1-1 */
    barrier();
    mark('b');
    irq_off();
    pend(1);
    REG32(NVIC_ICPR) = 1u << 1;
    barrier();
    irq_on(); /* nothing */
    mark('c');
    repends = 0;
    irq_action[1] = pend_self_once;
    pend(1); /* +1-1+1-1 */
    report_log("pend-state", "a+1-1bc+1-1+1-1");
}

/* 14. Nine levels deep: IRQ n (priority 0xF0 - 0x10 n) pends IRQ n + 1. */
static void pend_next(void)
{
    uint32_t irq = (read_ipsr() & 0x1FFu) - 16u;
    if (irq < 9u)
        pend(irq + 1u);
}

static void check_deep_nesting(void)
{
    for (uint32_t irq = 1; irq <= 9u; irq++) {
        set_priority(irq, (uint8_t)(0xF0u - irq * 0x10u));
        irq_action[irq] = pend_next;
    }
    pend(1);
    note_if(REG32(NVIC_IABR) != 0, ",iabr-after=0x%x", REG32(NVIC_IABR));
    report_log("deep-nesting", "+1+2+3+4+5+6+7+8+9-9-8-7-6-5-4-3-2-1");
}

/* 15. IRQ 0, the mailbox: a level (PENDING & IRQ_ENABLE), raised here by the
 * host's boot kick. ICPR does not withdraw it while raised; pended with IRQ 2
 * (0x40) and IRQ 3 (0x80, like IRQ 0) it runs after IRQ 2 and before IRQ 3;
 * its handler's ACK lowers it (it does not run again). */
static volatile uint32_t mailbox_acked;

static void ack_mailbox(void)
{
    uint32_t pending = rsim_pending();
    mailbox_acked |= pending;
    rsim_ack(pending);
}

static void check_mailbox_irq(uint32_t kicked)
{
    set_priority(0, 0x80);
    set_priority(2, 0x40);
    set_priority(3, 0x80);
    irq_action[0] = ack_mailbox;
    mailbox_acked = 0;
    irq_off();
    rsim_mbox_write(RSIM_MBOX_IRQ_ENABLE, kicked);
    REG32(NVIC_ISER) = 1u;
    REG32(NVIC_ISPR) = 1u << 2 | 1u << 3;
    REG32(NVIC_ICPR) = 1u;
    barrier();
    note_if((REG32(NVIC_ISPR) & 1u) == 0, ",ispr0-after-icpr=0");
    irq_on();
    REG32(NVIC_ICER) = 1u;
    rsim_mbox_write(RSIM_MBOX_IRQ_ENABLE, 0);
    note_if(mailbox_acked != kicked, ",acked=0x%x", mailbox_acked);
    report_log("mailbox-irq0", "+2-2+0-0+3-3");
}

static void run_checks(void)
{
    rsim_printf("irq-prio: cortex-m4 start\n");
    uint32_t kicked = wait_host_kick();
    irq_off();
    REG32(SCB_VTOR) = (uint32_t)(uintptr_t)irqprio_vectors;
    barrier();
    if (REG32(SCB_VTOR) != (uint32_t)(uintptr_t)irqprio_vectors)
        rsim_printf("irq-prio: VTOR reads 0x%x, not 0x%x\n", REG32(SCB_VTOR), (uint32_t)(uintptr_t)irqprio_vectors);
    REG32(NVIC_ICER) = 0xFFFFFFFFu;
    REG32(SCB_AIRCR) = AIRCR_VECTKEY;
    set_system_priorities(0xF0, 0x80);
    REG32(NVIC_ISER) = TEST_IRQS;

    static void (*const checks[])(void) = {
        check_preempt, check_same_priority, check_subpriority, check_simultaneous, check_masking,
        check_tail_chain, check_wfi_primask, check_nvic_active, check_context, check_psp,
        check_handler_chain, check_equal_priority_order, check_pend_state, check_deep_nesting,
    };
    /* First, while the host's kick is still pending: the later checks acknowledge kicks. */
    quiesce();
    if (kicked != 0)
        check_mailbox_irq(kicked);
    else
        rsim_printf("irq-prio: mailbox-irq0 skipped (no host kick)\n");
    for (uint32_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        quiesce();
        checks[i]();
    }
    quiesce();
}

#elif defined(__riscv)

/* ======================================================================== */
/* RV32: machine-mode interrupts and the CLINT                              */
/* ======================================================================== */

#define MSTATUS_MIE  (1u << 3)
#define MSTATUS_MPIE (1u << 7)
#define MSTATUS_MPP  (3u << 11)
#define MIE_MSIE     (1u << 3)
#define MIE_MTIE     (1u << 7)
#define MIE_MEIE     (1u << 11)
#define MCAUSE_INTERRUPT 0x80000000u

#define CLINT(offset) REG32(RSIM_CLINT_BASE + (offset))

#define csr_read(csr)                                          \
    ({                                                         \
        uint32_t v_;                                           \
        __asm__ volatile("csrr %0, " #csr : "=r"(v_)::"memory"); \
        v_;                                                    \
    })
#define csr_write(csr, v) __asm__ volatile("csrw " #csr ", %0" ::"r"((uint32_t)(v)) : "memory")
#define csr_set(csr, v)   __asm__ volatile("csrs " #csr ", %0" ::"r"((uint32_t)(v)) : "memory")
#define csr_clear(csr, v) __asm__ volatile("csrc " #csr ", %0" ::"r"((uint32_t)(v)) : "memory")

static inline void irq_off(void) { csr_clear(mstatus, MSTATUS_MIE); }
static inline void irq_on(void) { csr_set(mstatus, MSTATUS_MIE); }

static uint64_t mtime_now(void)
{
    uint32_t hi, lo;
    do {
        hi = CLINT(RSIM_CLINT_MTIME + 4);
        lo = CLINT(RSIM_CLINT_MTIME);
    } while (hi != CLINT(RSIM_CLINT_MTIME + 4));
    return (uint64_t)hi << 32 | lo;
}

/* High word all ones first: no false compare on the way. */
static void set_mtimecmp(uint64_t value)
{
    CLINT(RSIM_CLINT_MTIMECMP + 4) = 0xFFFFFFFFu;
    CLINT(RSIM_CLINT_MTIMECMP) = (uint32_t)value;
    CLINT(RSIM_CLINT_MTIMECMP + 4) = (uint32_t)(value >> 32);
}

static void raise_msip(void)
{
    CLINT(RSIM_CLINT_MSIP) = 1;
    (void)CLINT(RSIM_CLINT_MSIP);
}

/* Bounded wait until *flag != value (0: it never changed). */
static int wait_change(volatile uint32_t *flag, uint32_t value, uint32_t limit)
{
    for (uint32_t i = 0; i < limit; i++)
        if (*flag != value)
            return 1;
    return *flag != value;
}

typedef void (*action_t)(void);
static volatile action_t software_action, timer_action;
static volatile uint32_t software_runs, timer_runs;
static volatile uint32_t slot_log[8], slot_len; /* the vector slot each trap came through (vectored mode) */

/* The trap entry (direct mode) and the vectored table's slots: each saves a1
 * and puts its slot in it (0xFFFFFFFF: direct), then the common part saves
 * the caller-saved registers, mepc and mstatus (a handler may re-enable MIE
 * and be interrupted), calls irqprio_rv_trap(mcause, slot), restores
 * mstatus with MIE clear before mepc, and returns with mret. */
#define RV_TRAP_STUB(name, slot)                             \
    __attribute__((naked, aligned(4), used)) void name(void) \
    {                                                        \
        __asm__ volatile("addi sp, sp, -80\n"                \
                         "sw a1, 20(sp)\n"                   \
                         "li a1, " #slot "\n"                \
                         "j irqprio_rv_trap_common\n");      \
    }

RV_TRAP_STUB(irqprio_rv_trap_direct, -1)
RV_TRAP_STUB(irqprio_rv_slot0, 0)
RV_TRAP_STUB(irqprio_rv_slot3, 3)
RV_TRAP_STUB(irqprio_rv_slot7, 7)
RV_TRAP_STUB(irqprio_rv_slot11, 11)
RV_TRAP_STUB(irqprio_rv_slot_other, 99)

__attribute__((naked, used)) void irqprio_rv_trap_common(void)
{
    __asm__ volatile(
        "sw ra, 0(sp)\n  sw t0, 4(sp)\n  sw t1, 8(sp)\n  sw t2, 12(sp)\n"
        "sw a0, 16(sp)\n sw a2, 24(sp)\n sw a3, 28(sp)\n sw a4, 32(sp)\n"
        "sw a5, 36(sp)\n sw a6, 40(sp)\n sw a7, 44(sp)\n"
        "sw t3, 48(sp)\n sw t4, 52(sp)\n sw t5, 56(sp)\n sw t6, 60(sp)\n"
        "csrr t0, mepc\n    sw t0, 64(sp)\n"
        "csrr t0, mstatus\n sw t0, 68(sp)\n"
        "csrr a0, mcause\n"
        "call irqprio_rv_trap\n"
        "lw t0, 68(sp)\n csrw mstatus, t0\n"
        "lw t0, 64(sp)\n csrw mepc, t0\n"
        "lw ra, 0(sp)\n  lw t0, 4(sp)\n  lw t1, 8(sp)\n  lw t2, 12(sp)\n"
        "lw a0, 16(sp)\n lw a1, 20(sp)\n lw a2, 24(sp)\n lw a3, 28(sp)\n lw a4, 32(sp)\n"
        "lw a5, 36(sp)\n lw a6, 40(sp)\n lw a7, 44(sp)\n"
        "lw t3, 48(sp)\n lw t4, 52(sp)\n lw t5, 56(sp)\n lw t6, 60(sp)\n"
        "addi sp, sp, 80\n"
        "mret\n");
}

/* mtvec in vectored mode: slot k at base + 4k, each a 4-byte jump. */
__attribute__((naked, aligned(64), used)) void irqprio_rv_vectors(void)
{
    __asm__ volatile(".option push\n"
                     ".option norvc\n"
                     "j irqprio_rv_slot0\n"
                     "j irqprio_rv_slot_other\n"
                     "j irqprio_rv_slot_other\n"
                     "j irqprio_rv_slot3\n"
                     "j irqprio_rv_slot_other\n"
                     "j irqprio_rv_slot_other\n"
                     "j irqprio_rv_slot_other\n"
                     "j irqprio_rv_slot7\n"
                     "j irqprio_rv_slot_other\n"
                     "j irqprio_rv_slot_other\n"
                     "j irqprio_rv_slot_other\n"
                     "j irqprio_rv_slot11\n"
                     ".option pop\n");
}

static volatile uint32_t external_acked;

/* What the handler saw of the trap CSRs (check trap-csrs). */
static volatile uint32_t seen_mcause, seen_mstatus, seen_mepc, seen_mtval;

__attribute__((used)) void irqprio_rv_trap(uint32_t mcause, uint32_t slot)
{
    seen_mcause = mcause;
    seen_mstatus = csr_read(mstatus);
    seen_mepc = csr_read(mepc);
    seen_mtval = csr_read(mtval);
    if (slot_len < 8u)
        slot_log[slot_len++] = slot;
    if ((mcause & MCAUSE_INTERRUPT) == 0) {
        rsim_printf("irq-prio: unexpected exception mcause %u at 0x%x\n", mcause, seen_mepc);
        rsim_panic(PANIC_IRQ_PRIO | (mcause & 0x7FFu));
    }
    action_t action;
    switch (mcause & 0x7FFu) {
    case 3:
        CLINT(RSIM_CLINT_MSIP) = 0;
        log_event('+', 'S');
        software_runs++;
        action = software_action;
        if (action != 0)
            action();
        log_event('-', 'S');
        break;
    case 7:
        set_mtimecmp(UINT64_MAX);
        log_event('+', 'T');
        timer_runs++;
        action = timer_action;
        if (action != 0)
            action();
        log_event('-', 'T');
        break;
    case 11: {
        uint32_t pending = rsim_pending();
        rsim_ack(pending); /* lowers MEIP */
        external_acked |= pending;
        log_event('+', 'E');
        log_event('-', 'E');
        break;
    }
    default:
        rsim_printf("irq-prio: unexpected interrupt %u\n", mcause & 0x7FFu);
        rsim_panic(PANIC_IRQ_PRIO | 0x8000u | (mcause & 0x7FFu));
    }
}

static void quiesce(void)
{
    irq_off();
    csr_write(mie, 0);
    CLINT(RSIM_CLINT_MSIP) = 0;
    set_mtimecmp(UINT64_MAX);
    software_action = timer_action = 0;
    software_runs = timer_runs = 0;
    slot_len = 0;
    log_reset();
}

/* 1. MSI and MTI pending together with MIE clear: software first, then timer
 * (MEI > MSI > MTI), back to back, before the instruction after the csrs. */
static void check_simultaneous(void)
{
    csr_write(mie, MIE_MSIE | MIE_MTIE);
    raise_msip();
    set_mtimecmp(0); /* in the past */
    spin(SPIN_HOLD);
    mark('a');
    irq_on();
    mark('b');
    irq_off();
    report_log("simultaneous", "a+S-S+T-Tb");
}

/* 2. MIE clear holds a pending enabled interrupt; mie.MSIE clear holds it with
 * MIE set; both set let it in. */
static void check_masking(void)
{
    csr_write(mie, MIE_MTIE);
    raise_msip();
    spin(SPIN_HOLD);
    mark('a'); /* MIE clear, MSIE clear */
    irq_on();
    spin(SPIN_HOLD);
    mark('b'); /* MIE set, MSIE clear */
    irq_off();
    csr_set(mie, MIE_MSIE);
    spin(SPIN_HOLD);
    mark('c'); /* MIE clear, MSIE set */
    irq_on();
    mark('d');
    irq_off();
    report_log("masking", "abc+S-Sd");
}

/* 3. No preemption by default: the timer handler (MIE cleared by the trap)
 * raises msip; the software interrupt comes after mret. */
static void timer_raises_msip(void)
{
    raise_msip();
    spin(SPIN_HOLD);
}

static void check_no_preempt(void)
{
    csr_write(mie, MIE_MSIE | MIE_MTIE);
    timer_action = timer_raises_msip;
    set_mtimecmp(0);
    mark('a');
    irq_on();
    mark('b');
    irq_off();
    report_log("no-preempt", "a+T-T+S-Sb");
}

/* 4. Nesting: the timer handler (its mepc and mstatus saved by the entry)
 * sets MIE and raises msip: the software interrupt runs inside it. */
static void timer_nests_msip(void)
{
    uint32_t before = software_runs;
    irq_on();
    raise_msip();
    int taken = wait_change(&software_runs, before, WAIT_LIMIT);
    irq_off();
    if (!taken)
        mark('x');
}

static void check_nesting(void)
{
    csr_write(mie, MIE_MSIE | MIE_MTIE);
    timer_action = timer_nests_msip;
    set_mtimecmp(0);
    mark('a');
    irq_on();
    mark('b');
    irq_off();
    report_log("nesting", "a+T+S-S-Tb");
}

/* 5. Back to back: an interrupt pending at mret is taken before any thread
 * instruction: a counter the thread increments is the same at the timer
 * handler's exit and the software handler's entry. */
static volatile uint32_t thread_counter, counter_at_timer_exit, counter_at_software, software_done;

static void timer_raises_then_records(void)
{
    raise_msip();
    spin(1000);
    counter_at_timer_exit = thread_counter;
}

static void software_records(void)
{
    counter_at_software = thread_counter;
    software_done = 1;
}

static void check_back_to_back(void)
{
    csr_write(mie, MIE_MSIE | MIE_MTIE);
    timer_action = timer_raises_then_records;
    software_action = software_records;
    thread_counter = 0;
    counter_at_timer_exit = counter_at_software = 0xFFFFFFFFu;
    software_done = 0;
    irq_on();
    while (!software_done && thread_counter < WAIT_LIMIT) {
        thread_counter++;
        if (thread_counter == 1000u)
            set_mtimecmp(0);
    }
    irq_off();
    note_if(counter_at_timer_exit == 0xFFFFFFFFu, ",timer-exit-count=none");
    note_if(counter_at_software != counter_at_timer_exit, ",software-count=%u", counter_at_software);
    report_log("back-to-back", "+T-T+S-S");
}

/* 6. wfi with MIE clear wakes when the enabled timer interrupt is pending; it
 * is taken once MIE is set. The loop ends when the firmware reads
 * mtime >= mtimecmp, which is the definition of MTIP pending (privileged
 * spec, "Machine Timer Registers"), and a write of mstatus re-evaluates the
 * trap conditions at once: the handler must run before mark 'b'. */
static void check_wfi(void)
{
    csr_write(mie, MIE_MTIE);
    uint64_t deadline = mtime_now() + cycles_per_ms(); /* 1 ms */
    set_mtimecmp(deadline);
    uint32_t wakes = 0;
    while (mtime_now() < deadline && wakes < WAIT_LIMIT) {
        ack_host_kicks();
        __asm__ volatile("wfi" ::: "memory");
        wakes++;
    }
    note_if(mtime_now() < deadline, ",woke-early=%u", wakes);
    note_if(timer_runs != 0, ",ran-masked=%u", timer_runs);
    mark('a');
    irq_on();
    mark('b');
    irq_off();
    report_log("wfi", "a+T-Tb");
}

/* 7. The trap CSRs of an interrupt: mcause (interrupt bit | 3), mstatus MIE 0,
 * MPIE 1, MPP M; mepc the instruction after the csrs that let it in; mtval 0;
 * MIE set again after mret. */
static void check_trap_csrs(void)
{
    csr_write(mie, MIE_MSIE);
    raise_msip();
    uint32_t next, after;
    __asm__ volatile("csrs mstatus, %2\n"
                     "1:\n"
                     "la %0, 1b\n"
                     "csrr %1, mstatus\n"
                     : "=&r"(next), "=&r"(after)
                     : "r"(MSTATUS_MIE)
                     : "memory");
    irq_off();
    char mepc[32];
    if (seen_mepc == next)
        rsim_snprintf(mepc, sizeof mepc, "next");
    else
        rsim_snprintf(mepc, sizeof mepc, "0x%x/next=0x%x", seen_mepc, next);
    char observed[200];
    rsim_snprintf(observed, sizeof observed, "%s,mcause=0x%x,mie=%u,mpie=%u,mpp=%u,mepc=%s,mtval=%u,after.mie=%u",
                  software_runs == 1u ? "+S-S" : "_", seen_mcause, (seen_mstatus & MSTATUS_MIE) != 0,
                  (seen_mstatus & MSTATUS_MPIE) != 0, (seen_mstatus & MSTATUS_MPP) >> 11, mepc, seen_mtval,
                  (after & MSTATUS_MIE) != 0);
    report("trap-csrs", observed, "+S-S,mcause=0x80000003,mie=0,mpie=1,mpp=3,mepc=next,mtval=0,after.mie=1");
    log_reset();
}

/* 8. mtvec in vectored mode: interrupts go to base + 4 x cause (slots 3 and 7). */
static void check_vectored(void)
{
    uint32_t base = (uint32_t)(uintptr_t)&irqprio_rv_vectors;
    csr_write(mtvec, base | 1u);
    uint32_t readback = csr_read(mtvec);
    note_if(readback != (base | 1u), ",mtvec=0x%x", readback);
    csr_write(mie, MIE_MSIE | MIE_MTIE);
    raise_msip();
    set_mtimecmp(0);
    irq_on();
    irq_off();
    csr_write(mtvec, (uint32_t)(uintptr_t)&irqprio_rv_trap_direct);
    note(",slots=%u", slot_len);
    for (uint32_t i = 0; i < slot_len; i++)
        note(":%d", (int)slot_log[i]);
    report_log("vectored", "+S-S+T-T,slots=2:3:7");
}

/* 9. All three at once: the mailbox (MEIP, raised by the host's boot kick
 * with IRQ_ENABLE), msip and the timer, with MIE clear: MEI, MSI, MTI; the
 * handler's ACK lowers MEIP (it does not come again). */
static void check_external_order(uint32_t kicked)
{
    csr_write(mie, MIE_MSIE | MIE_MTIE | MIE_MEIE);
    external_acked = 0;
    rsim_mbox_write(RSIM_MBOX_IRQ_ENABLE, kicked);
    raise_msip();
    set_mtimecmp(0);
    spin(SPIN_HOLD);
    mark('a');
    irq_on();
    mark('b');
    irq_off();
    rsim_mbox_write(RSIM_MBOX_IRQ_ENABLE, 0);
    note_if(external_acked != kicked, ",acked=0x%x", external_acked);
    report_log("external-order", "a+E-E+S-S+T-Tb");
}

/* 10. The CLINT's levels: msip written 0 and mtimecmp moved back to the
 * future before MIE is set withdraw both (nothing is taken); a write of mtime
 * past mtimecmp raises the timer interrupt. */
static void check_clint_levels(void)
{
    csr_write(mie, MIE_MSIE | MIE_MTIE);
    raise_msip();
    CLINT(RSIM_CLINT_MSIP) = 0;
    set_mtimecmp(0);
    set_mtimecmp(UINT64_MAX);
    mark('a');
    irq_on();
    spin(SPIN_HOLD);
    mark('b');
    uint64_t now = mtime_now();
    uint64_t far = now + 100u * (uint64_t)rsim_core_clock_hz(); /* 100 s away */
    set_mtimecmp(far);
    spin(SPIN_HOLD);
    mark('c');
    CLINT(RSIM_CLINT_MTIME + 4) = (uint32_t)(far >> 32);
    CLINT(RSIM_CLINT_MTIME) = (uint32_t)far; /* +T-T */
    uint32_t before = timer_runs;
    for (uint32_t i = 0; i < WAIT_LIMIT && timer_runs == before; i++) {
    }
    mark('d');
    irq_off();
    report_log("clint-levels", "abc+T-Td");
}

static void run_checks(void)
{
    rsim_printf("irq-prio: rv32 start\n");
    uint32_t kicked = wait_host_kick();
    irq_off();
    csr_write(mie, 0);
    uint32_t entry = (uint32_t)(uintptr_t)&irqprio_rv_trap_direct;
    csr_write(mtvec, entry);
    if (csr_read(mtvec) != entry)
        rsim_printf("irq-prio: mtvec reads 0x%x, not 0x%x\n", csr_read(mtvec), entry);

    static void (*const checks[])(void) = {
        check_simultaneous, check_masking, check_no_preempt, check_nesting, check_back_to_back,
        check_wfi, check_trap_csrs, check_vectored, check_clint_levels,
    };
    /* First, while the host's kick is still pending: the later checks acknowledge kicks. */
    quiesce();
    if (kicked != 0)
        check_external_order(kicked);
    else
        rsim_printf("irq-prio: external-order skipped (no host kick)\n");
    for (uint32_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        quiesce();
        checks[i]();
    }
    quiesce();
}

#else
#error "irq-prio: Cortex-M4 or RV32 only"
#endif

int main(void)
{
    run_checks();
    rsim_printf("irq-prio: done %u/%u\n", checks_passed, checks_total);
    for (;;) {
        ack_host_kicks();
        (void)rsim_wait();
    }
}
