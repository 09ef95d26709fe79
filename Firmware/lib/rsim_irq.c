/*
 * rsim_irq.c — see rsim_irq.h.
 */
#include "rsim_irq.h"

volatile uint32_t rsim_timer_ticks;
static volatile uint32_t mailbox_events;

__attribute__((weak)) void rsim_irq_on_mailbox(uint32_t pending) { (void)pending; }
__attribute__((weak)) void rsim_irq_on_tick(void) {}
__attribute__((weak)) void rsim_irq_on_software(void) {}
__attribute__((weak)) void rsim_irq_on_syscall(void) {}
__attribute__((weak)) struct rsim_irq_frame *rsim_irq_schedule(struct rsim_irq_frame *current) { return current; }

/* The mailbox interrupt: acknowledge what is pending (only those bits: a kick
 * arriving meanwhile stays pending and interrupts again) and record it. */
static void mailbox_interrupt(void)
{
    uint32_t pending = rsim_pending();
    if (pending == 0)
        return;
    rsim_ack(pending);
    mailbox_events |= pending;
    rsim_irq_on_mailbox(pending);
}

/* What a task's entry function returns to: there is nothing to go back to. */
static void task_returned(void) { rsim_panic(RSIM_PANIC_TASK_RETURNED); }

uint32_t rsim_irq_take_mailbox_events(void)
{
    uint32_t state = rsim_irq_save();
    uint32_t events = mailbox_events;
    mailbox_events = 0;
    rsim_irq_restore(state);
    return events;
}

#if defined(__riscv)

#define MIE_MSIE (1u << 3)
#define MIE_MTIE (1u << 7)
#define MIE_MEIE (1u << 11)
#define MSTATUS_MIE (1u << 3)

static uint32_t timer_period; /* core cycles per tick; 0: stopped */

#define CLINT_REG(offset) (*(volatile uint32_t *)(uintptr_t)(RSIM_CLINT_BASE + (offset)))

uint64_t rsim_timer_now(void)
{
    uint32_t hi, lo;
    do {
        hi = CLINT_REG(RSIM_CLINT_MTIME + 4);
        lo = CLINT_REG(RSIM_CLINT_MTIME);
    } while (hi != CLINT_REG(RSIM_CLINT_MTIME + 4));
    return ((uint64_t)hi << 32) | lo;
}

/* mtimecmp in the order that never makes a false compare on the way: high
 * word all ones first. */
static void set_mtimecmp(uint64_t value)
{
    CLINT_REG(RSIM_CLINT_MTIMECMP + 4) = 0xFFFFFFFFu;
    CLINT_REG(RSIM_CLINT_MTIMECMP) = (uint32_t)value;
    CLINT_REG(RSIM_CLINT_MTIMECMP + 4) = (uint32_t)(value >> 32);
}

void rsim_irq_enable(void) { __asm__ volatile("csrs mstatus, %0" ::"r"(MSTATUS_MIE) : "memory"); }
void rsim_irq_disable(void) { __asm__ volatile("csrc mstatus, %0" ::"r"(MSTATUS_MIE) : "memory"); }

uint32_t rsim_irq_save(void)
{
    uint32_t old;
    __asm__ volatile("csrrc %0, mstatus, %1" : "=r"(old) : "r"(MSTATUS_MIE) : "memory");
    return old & MSTATUS_MIE;
}

void rsim_irq_restore(uint32_t state)
{
    if (state & MSTATUS_MIE)
        rsim_irq_enable();
}

void rsim_irq_enable_mailbox(void)
{
    rsim_mbox_write(RSIM_MBOX_IRQ_ENABLE, 0xFFFFFFFFu);
    __asm__ volatile("csrs mie, %0" ::"r"(MIE_MEIE) : "memory");
}

void rsim_irq_raise_software(void)
{
    __asm__ volatile("csrs mie, %0" ::"r"(MIE_MSIE) : "memory");
    CLINT_REG(RSIM_CLINT_MSIP) = 1;
}

void rsim_timer_start(uint32_t hz)
{
    __asm__ volatile("csrc mie, %0" ::"r"(MIE_MTIE) : "memory");
    if (hz == 0) {
        timer_period = 0;
        set_mtimecmp(UINT64_MAX);
        return;
    }
    timer_period = rsim_core_clock_hz() / hz;
    set_mtimecmp(rsim_timer_now() + timer_period);
    __asm__ volatile("csrs mie, %0" ::"r"(MIE_MTIE) : "memory");
}

void rsim_irq_wait(void)
{
    rsim_irq_disable();
    __asm__ volatile("wfi" ::: "memory"); /* wakes on a pending enabled interrupt, masked or not */
    rsim_irq_enable();                    /* taken here */
}

/* Called by the trap entry with the saved context; returns the context to restore. */
__attribute__((used)) struct rsim_irq_frame *rsim_irq_dispatch(struct rsim_irq_frame *frame)
{
    uint32_t cause;
    __asm__ volatile("csrr %0, mcause" : "=r"(cause));
    if (cause & 0x80000000u) {
        switch (cause & 0x7FFu) {
        case 11:
            mailbox_interrupt();
            break;
        case 7:
            if (timer_period == 0) {
                set_mtimecmp(UINT64_MAX);
            } else {
                /* The next tick a period after this one was due: no drift. */
                uint32_t lo = CLINT_REG(RSIM_CLINT_MTIMECMP), hi = CLINT_REG(RSIM_CLINT_MTIMECMP + 4);
                set_mtimecmp((((uint64_t)hi << 32) | lo) + timer_period);
            }
            rsim_timer_ticks++;
            rsim_irq_on_tick();
            break;
        case 3:
            CLINT_REG(RSIM_CLINT_MSIP) = 0;
            rsim_irq_on_software();
            break;
        default:
            rsim_panic(RSIM_PANIC_TRAP | 0x8000u | (cause & 0x7FFu));
        }
    } else if (cause == 11) {
        frame->mepc += 4; /* return past the ecall */
        rsim_irq_on_syscall();
    } else {
        rsim_panic(RSIM_PANIC_TRAP | (cause & 0x7FFFu));
    }
    return rsim_irq_schedule(frame);
}

/* Saves x1, x3..x31, mepc and mstatus in a frame on the stack, calls the
 * dispatcher, restores the frame it returns, mret. */
__attribute__((naked, aligned(4))) void rsim_irq_trap_entry(void)
{
    __asm__ volatile(
        "addi sp, sp, -144\n"
        "sw x1, 8(sp)\n"
        "sw x3, 16(sp)\n  sw x4, 20(sp)\n  sw x5, 24(sp)\n  sw x6, 28(sp)\n  sw x7, 32(sp)\n"
        "sw x8, 36(sp)\n  sw x9, 40(sp)\n  sw x10, 44(sp)\n sw x11, 48(sp)\n sw x12, 52(sp)\n"
        "sw x13, 56(sp)\n sw x14, 60(sp)\n sw x15, 64(sp)\n sw x16, 68(sp)\n sw x17, 72(sp)\n"
        "sw x18, 76(sp)\n sw x19, 80(sp)\n sw x20, 84(sp)\n sw x21, 88(sp)\n sw x22, 92(sp)\n"
        "sw x23, 96(sp)\n sw x24, 100(sp)\n sw x25, 104(sp)\n sw x26, 108(sp)\n sw x27, 112(sp)\n"
        "sw x28, 116(sp)\n sw x29, 120(sp)\n sw x30, 124(sp)\n sw x31, 128(sp)\n"
        "csrr t0, mepc\n    sw t0, 0(sp)\n"
        "csrr t0, mstatus\n sw t0, 132(sp)\n"
        /* Unwind information, so a debugger's backtrace from a handler continues into the
         * interrupted code: the frame is a trap frame whose return address is the saved mepc
         * (DWARF register 4096 + 0x341), its CFA the interrupted sp, ra and s0 in their slots. */
        ".cfi_signal_frame\n"
        ".cfi_def_cfa sp, 144\n"
        ".cfi_return_column 4929\n"
        ".cfi_offset 4929, -144\n"
        ".cfi_offset ra, -136\n"
        ".cfi_offset s0, -108\n"
        ".cfi_offset s1, -104\n"
        "mv a0, sp\n"
        "call rsim_irq_dispatch\n"
        "mv sp, a0\n"
        "lw t0, 0(sp)\n     csrw mepc, t0\n"
        "lw t0, 132(sp)\n   csrw mstatus, t0\n"
        "lw x1, 8(sp)\n"
        "lw x3, 16(sp)\n  lw x4, 20(sp)\n  lw x5, 24(sp)\n  lw x6, 28(sp)\n  lw x7, 32(sp)\n"
        "lw x8, 36(sp)\n  lw x9, 40(sp)\n  lw x10, 44(sp)\n lw x11, 48(sp)\n lw x12, 52(sp)\n"
        "lw x13, 56(sp)\n lw x14, 60(sp)\n lw x15, 64(sp)\n lw x16, 68(sp)\n lw x17, 72(sp)\n"
        "lw x18, 76(sp)\n lw x19, 80(sp)\n lw x20, 84(sp)\n lw x21, 88(sp)\n lw x22, 92(sp)\n"
        "lw x23, 96(sp)\n lw x24, 100(sp)\n lw x25, 104(sp)\n lw x26, 108(sp)\n lw x27, 112(sp)\n"
        "lw x28, 116(sp)\n lw x29, 120(sp)\n lw x30, 124(sp)\n lw x31, 128(sp)\n"
        "addi sp, sp, 144\n"
        "mret\n");
}

void rsim_irq_init(void)
{
    __asm__ volatile("csrw mtvec, %0" ::"r"((uint32_t)(uintptr_t)&rsim_irq_trap_entry) : "memory");
}

#define MSTATUS_MPIE (1u << 7)
#define MSTATUS_MPP_M (3u << 11)

struct rsim_irq_frame *rsim_irq_task_frame(void *stack_top, void (*entry)(void *), void *arg)
{
    /* The trap entry restores a frame and then pops it (sp = frame + 144), so
     * the frame sits at the very top and the task starts on an empty,
     * 16-byte aligned stack, as the psABI wants. */
    uintptr_t top = (uintptr_t)stack_top & ~(uintptr_t)15;
    struct rsim_irq_frame *f = (struct rsim_irq_frame *)(top - sizeof *f);
    uint32_t *w = (uint32_t *)f;
    for (uint32_t i = 0; i < sizeof *f / 4; i++)
        w[i] = 0;
    uint32_t gp, tp;
    __asm__ volatile("mv %0, gp\n mv %1, tp" : "=r"(gp), "=r"(tp));
    f->mepc = (uint32_t)(uintptr_t)entry;
    f->x[1] = (uint32_t)(uintptr_t)&task_returned; /* ra */
    f->x[3] = gp;                                  /* the linker relaxes globals against it */
    f->x[4] = tp;
    f->x[10] = (uint32_t)(uintptr_t)arg;           /* a0 */
    /* mret: MIE <- MPIE (interrupts on in the task), privilege <- MPP (machine). */
    f->mstatus = MSTATUS_MPP_M | MSTATUS_MPIE;
    return f;
}

#elif defined(__arm__)

/* ARMv7-M: the System Control Space. */
#define NVIC_ISER0 (*(volatile uint32_t *)0xE000E100u)
#define SCB_ICSR   (*(volatile uint32_t *)0xE000ED04u)
#define SCB_SHPR3  (*(volatile uint32_t *)0xE000ED20u)
#define SYST_CSR   (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR   (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR   (*(volatile uint32_t *)0xE000E018u)
#define ICSR_PENDSVSET (1u << 28)

static volatile uint64_t cycles_base; /* whole SysTick periods counted by the tick */

void rsim_irq_init(void) { SCB_SHPR3 |= 0xFFu << 16; /* PendSV at the lowest priority */ }
void rsim_irq_enable(void) { __asm__ volatile("cpsie i" ::: "memory"); }
void rsim_irq_disable(void) { __asm__ volatile("cpsid i" ::: "memory"); }

uint32_t rsim_irq_save(void)
{
    uint32_t primask;
    __asm__ volatile("mrs %0, primask\n cpsid i" : "=r"(primask)::"memory");
    return primask;
}

void rsim_irq_restore(uint32_t state) { __asm__ volatile("msr primask, %0" ::"r"(state) : "memory"); }

void rsim_irq_enable_mailbox(void)
{
    rsim_mbox_write(RSIM_MBOX_IRQ_ENABLE, 0xFFFFFFFFu);
    NVIC_ISER0 = 1u; /* IRQ 0 */
}
void rsim_irq_raise_software(void) { SCB_ICSR = ICSR_PENDSVSET; }

void rsim_timer_start(uint32_t hz)
{
    SYST_CSR = 0;
    if (hz == 0)
        return;
    SYST_RVR = rsim_core_clock_hz() / hz - 1u;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* enable, interrupt, core clock */
}

uint64_t rsim_timer_now(void)
{
    uint32_t state = rsim_irq_save();
    uint64_t now = cycles_base + (SYST_RVR - SYST_CVR);
    rsim_irq_restore(state);
    return now;
}

void rsim_irq_wait(void)
{
    rsim_irq_disable();
    __asm__ volatile("wfi" ::: "memory"); /* wakes on a pending interrupt, even masked by PRIMASK */
    rsim_irq_enable();
}

void rsim_irq_mailbox_isr(void) { mailbox_interrupt(); }

void rsim_irq_systick_isr(void)
{
    cycles_base += SYST_RVR + 1u;
    rsim_timer_ticks++;
    rsim_irq_on_tick();
}

void rsim_irq_svc_isr(void) { rsim_irq_on_syscall(); }

/* PendSV's C half: the software hook as before, then the scheduler with
 * PRIMASK set, so the tick or SVC hooks (higher priorities) never see its
 * bookkeeping half done. PendSV itself is only entered with PRIMASK clear. */
__attribute__((used)) struct rsim_irq_frame *rsim_irq_pendsv_dispatch(struct rsim_irq_frame *frame)
{
    rsim_irq_on_software();
    uint32_t state = rsim_irq_save();
    frame = rsim_irq_schedule(frame);
    rsim_irq_restore(state);
    return frame;
}

/* PendSV: see rsim_irq.h. Naked because it must reach r4-r11 and the PSP
 * before any compiled code touches them. EXC_RETURN bit 2 tells which stack
 * the interrupted code used; only a process-stack context becomes a frame. */
__attribute__((naked)) void rsim_irq_pendsv_isr(void)
{
    __asm__ volatile(
        "movs   r0, #0\n"
        "tst    lr, #4\n"             /* interrupted code on the main stack: no frame */
        "beq    1f\n"
        "mrs    r0, psp\n"
        "stmdb  r0!, {r4-r11}\n"      /* below the core's 8 words: one struct rsim_irq_frame */
        "1:\n"
        "push   {r0, lr}\n"           /* EXC_RETURN; two words keep the MSP 8-byte aligned */
        "bl     rsim_irq_pendsv_dispatch\n"
        "pop    {r1, lr}\n"
        "cbz    r0, 2f\n"             /* NULL: back where PendSV came from, unchanged */
        "ldmia  r0!, {r4-r11}\n"
        "msr    psp, r0\n"            /* the core pops the other 8 words from here */
        "mvn    lr, #2\n"             /* 0xFFFFFFFD: Thread mode, process stack (sets CONTROL.SPSEL) */
        "2:\n"
        "bx     lr\n");
}

struct rsim_irq_frame *rsim_irq_task_frame(void *stack_top, void (*entry)(void *), void *arg)
{
    /* Exception return pops the 8 hardware words and leaves the PSP at the
     * top: the task starts on an empty, 8-byte aligned stack (AAPCS). */
    uintptr_t top = (uintptr_t)stack_top & ~(uintptr_t)7;
    struct rsim_irq_frame *f = (struct rsim_irq_frame *)(top - sizeof *f);
    uint32_t *w = (uint32_t *)f;
    for (uint32_t i = 0; i < sizeof *f / 4; i++)
        w[i] = 0;
    f->r0 = (uint32_t)(uintptr_t)arg;
    f->lr = (uint32_t)(uintptr_t)&task_returned;   /* a Thumb address: bit 0 set */
    f->pc = (uint32_t)(uintptr_t)entry & ~1u;      /* the stacked return address is a halfword address */
    f->xpsr = 1u << 24;                            /* Thumb; IPSR 0 (Thread mode); no padding word */
    return f;
}

#endif
