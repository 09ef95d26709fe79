/*
 * sched — a small preemptive round-robin scheduler of our own, proving the
 * interrupt hardware an RTOS needs on both cores.
 *
 * Four tasks, each on its own static stack: three workers serving the
 * endpoints "sched-0", "sched-1", "sched-2", and a service task that
 * processes the vrings. They are switched round-robin
 *   - by the 1 kHz timer tick (a preemption), and
 *   - by a voluntary yield: `svc #0` on Cortex-M4, `ecall` on RV32.
 *
 * The switch itself is rsim_irq_schedule() (see rsim_irq.h):
 *   Cortex-M4: SysTick (priority 0x80) and SVC only note why and pend PendSV;
 *     PendSV (lowest priority, so it runs once no other handler is active)
 *     pushes r4-r11 on the task's process stack, this file picks the next
 *     task's saved frame, PendSV pops its r4-r11, sets the PSP and returns
 *     with EXC_RETURN 0xFFFFFFFD. Tasks run in Thread mode on the PSP.
 *   RV32: every trap saves the whole context on the task's stack and ends in
 *     rsim_irq_schedule(), which returns the frame to restore before mret.
 * main() starts the first task with a yield: on the M4 the PendSV it causes
 * interrupted main-stack code (frame NULL), on RV32 main's frame is dropped.
 *
 * Messages: the mailbox interrupt only acknowledges kicks and records them;
 * the service task processes the vrings in thread context. An endpoint
 * callback copies the message into its worker's inbox; the worker, which
 * looks at its inbox once per loop (and yields every loop), answers
 * "<index>:<payload>" — or, for exactly "stats?",
 * "switches <n> preempted <n> yields <n> errors <n>" and, for "checks?",
 * "checks <n> preempted-in-check <n> preempted-in-spin <n> ticks <n>"
 * (register checks done, preemptions that interrupted one — and of those,
 * one of its spin loops — and timer ticks so far). Every 10,000 switches
 * the console gets "sched: <n> switches in <ms> ms: preempted <n> yields <n>
 * errors <n>" (time since "sched: ready").
 *
 * The RPMsg library is single-threaded (one static device state, vring
 * indices and "in poll" flags read and written without atomics): a task
 * switched out in the middle of a send or poll would leave it half updated
 * for the next task's call. So every call into it — the poll, the sends —
 * runs under the scheduler lock: while it is held a tick or yield does not
 * switch tasks (the switch is kept and done at the unlock), so each call
 * completes before another task runs. Interrupts stay enabled meanwhile: the
 * mailbox interrupt never touches RPMsg state, and a blocking send waiting
 * for a host buffer keeps the tick counting. The one switch inside a call is
 * deliberate: an endpoint callback whose inbox is full opens the lock and
 * yields until the worker made room (on_message), at the point where the
 * library allows a callback to send.
 *
 * Register preservation: every worker loop runs sched_reg_check(), which
 * loads a pattern (seed per task and iteration) into every general register
 * it may use, spins (so the tick preempts it there), yields, spins again and
 * then stores every register for C to compare. An error is counted, and
 * printed, for each check where any register lost its pattern.
 *
 * Counters: switches = every switch from one task to another; preempted =
 * those the tick caused; yields = those a yield caused (every yield switches:
 * all four tasks are always ready). So switches = preempted + yields.
 */
#include <stddef.h>

#include "rsim_irq.h"
#include "rsim_printf.h"
#include "rsim_rpmsg.h"

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);

#define PANIC_SCHED 0x5C4E0000u /* | reason below */
#define PANIC_STACK_GUARD 0x100u  /* | task: a stack overflowed its guard word */
#define PANIC_NOT_THREAD  0x200u  /* | task: not in Thread mode on the process stack / its own stack */
#define PANIC_NO_FRAME    0x300u  /* the switch found no interrupted task context */
#define PANIC_START       0x400u  /* main came back from starting the scheduler */
#define PANIC_LOCK        0x500u  /* an endpoint callback found the lock nested */

#define TICK_HZ 1000u
#define NWORKERS 3u
#define SERVICE NWORKERS          /* the task index of the service task */
#define NTASKS (NWORKERS + 1u)
#define STACK_WORDS 1024u         /* 4 KiB each; under 1 KiB was ever used (a 498-byte reply buffer, printf, a trap frame) */
#define STACK_GUARD 0x5AC0FFEEu
/* Spin iterations before and after the yield in the register check: long
 * enough that many ticks preempt a spin loop, short enough that a worker
 * yields thousands of times a second. The M4 needs the longer spin: its
 * yield is three exception transitions the board performs (SVC entry, the
 * tail-chain into PendSV, the return), and a tick falling due meanwhile is
 * taken at one of those boundaries, so the spin must be a larger share of
 * the time for ticks to land in it. */
#if defined(__arm__)
#define CHECK_SPIN 10000u
#else
#define CHECK_SPIN 3000u
#endif

/* A full inbox makes the endpoint callback wait (on_message), so a burst
 * for one endpoint waits in the host's ring instead of being dropped. */
#define INBOX_SLOTS 4u
#define MSG_MAX 496u              /* the largest payload a 512-byte host buffer holds */

/* ------------------------------------------------------------------------ */
/* Tasks and the scheduler                                                   */
/* ------------------------------------------------------------------------ */

/* 16-byte alignment serves both cores (RV32 psABI 16, AAPCS 8). */
static uint32_t stacks[NTASKS][STACK_WORDS] __attribute__((aligned(16)));
static struct rsim_irq_frame *saved[NTASKS]; /* a task's context while it is not running */
static int current = -1;                     /* the running task; -1: not started yet */

#define WHY_TICK 1u
#define WHY_YIELD 2u
static volatile uint32_t resched;    /* WHY_* bits: a switch is due (set by the tick and the yield) */
static volatile uint32_t lock_depth; /* > 0: no switch (RPMsg in use) */
static volatile uint32_t running;    /* the tasks are set up: the hooks may start them */

static volatile uint32_t switches, preempted, yields, errors, checks, preempted_in_check, preempted_in_spin;

struct check_ctx;
void sched_reg_check(struct check_ctx *ctx);
/* Labels in it: its end and the two spin loops. */
extern const char sched_reg_check_end[], sched_spin_a[], sched_spin_a_end[], sched_spin_b[], sched_spin_b_end[];

/* The next pending switch: on the M4 PendSV does it, on RV32 the end of the
 * trap we are in already calls rsim_irq_schedule(). */
static void request_switch(void)
{
#if defined(__arm__)
    rsim_irq_raise_software();
#endif
}

void rsim_irq_on_tick(void)
{
    resched |= WHY_TICK;
    request_switch();
}

void rsim_irq_on_syscall(void)
{
    resched |= WHY_YIELD;
    request_switch();
}

static uint32_t frame_pc(const struct rsim_irq_frame *f)
{
#if defined(__arm__)
    return f->pc;
#else
    return f->mepc;
#endif
}

static int in(uint32_t pc, uintptr_t start, const char *end)
{
    return pc >= (uint32_t)start && pc < (uint32_t)(uintptr_t)end;
}

/* Runs with interrupts disabled (rsim_irq.h), so nothing here races the hooks. */
struct rsim_irq_frame *rsim_irq_schedule(struct rsim_irq_frame *frame)
{
    uint32_t why = resched;
    if (why == 0 || !running || lock_depth != 0)
        return frame; /* nothing due, or kept (resched stays set) until sched_unlock() */
    resched = 0;
    if (current < 0) {
        /* Start: main's context is dropped (on the M4 frame is NULL: main ran on the MSP). */
        current = (int)SERVICE;
        return saved[SERVICE];
    }
    if (frame == NULL)
        rsim_panic(PANIC_SCHED | PANIC_NO_FRAME);
    if (stacks[current][0] != STACK_GUARD)
        rsim_panic(PANIC_SCHED | PANIC_STACK_GUARD | (uint32_t)current);
    saved[current] = frame;
    if (why & WHY_YIELD) {
        yields++; /* a tick that came with it is served by this switch too */
    } else {
        preempted++;
        uint32_t pc = frame_pc(frame);
        if (in(pc, (uintptr_t)&sched_reg_check & ~(uintptr_t)1, sched_reg_check_end))
            preempted_in_check++;
        if (in(pc, (uintptr_t)sched_spin_a, sched_spin_a_end) || in(pc, (uintptr_t)sched_spin_b, sched_spin_b_end))
            preempted_in_spin++;
    }
    current = (current + 1) % (int)NTASKS;
    switches++;
    return saved[current];
}

/* Gives the processor to the next task: a trap that ends in rsim_irq_schedule().
 * Every register survives it (the trap saves the whole context), so the asm
 * clobbers only memory. Never with interrupts disabled: an SVC the M4 cannot
 * take escalates to HardFault. */
static inline void sched_yield(void)
{
#if defined(__arm__)
    __asm__ volatile("svc #0" ::: "memory");
#else
    __asm__ volatile("ecall" ::: "memory");
#endif
}

static inline void sched_lock(void)
{
    /* A plain increment is safe: a switch can only happen while it is 0, and
     * every other task leaves it as it found it before it can be switched out. */
    lock_depth++;
    __asm__ volatile("" ::: "memory");
}

static inline void sched_unlock(void)
{
    __asm__ volatile("" ::: "memory");
    if (--lock_depth == 0 && resched != 0)
        rsim_irq_raise_software(); /* the switch kept while locked: M4 PendSV, RV32 msip */
}

/* Every task checks once that it runs where the scheduler said: on its own
 * stack and, on the M4, in Thread mode on the process stack (CONTROL.SPSEL). */
static void check_context(uint32_t task)
{
    uintptr_t sp;
#if defined(__arm__)
    uint32_t control, ipsr;
    __asm__ volatile("mov %0, sp\n mrs %1, control\n mrs %2, ipsr" : "=r"(sp), "=r"(control), "=r"(ipsr));
    if ((control & 2u) == 0 || (ipsr & 0x1FFu) != 0)
        rsim_panic(PANIC_SCHED | PANIC_NOT_THREAD | task);
#else
    __asm__ volatile("mv %0, sp" : "=r"(sp));
#endif
    if (sp <= (uintptr_t)&stacks[task][0] || sp > (uintptr_t)&stacks[task][STACK_WORDS])
        rsim_panic(PANIC_SCHED | PANIC_NOT_THREAD | task);
}

/* ------------------------------------------------------------------------ */
/* The register check                                                        */
/* ------------------------------------------------------------------------ */

/* Shared with the asm: offsets are fixed. */
struct check_ctx {
    uint32_t seed;     /* 0 */
    uint32_t spin;     /* 4: spin iterations before and after the yield */
    uint32_t regs[32]; /* 8: what the registers held at the end (layout per core, below) */
};
_Static_assert(offsetof(struct check_ctx, spin) == 4, "asm offset");
_Static_assert(offsetof(struct check_ctx, regs) == 8, "asm offset");

#if defined(__arm__)
/*
 * r0-r11 = seed ^ (k+1)*0x11111111, lr = seed ^ 0xEEEEEEEE; r12 = seed ^
 * 0xDDDDDDDD across the yield, and the spin counter otherwise (something has
 * to count; it ends at 0). sp and pc are the only registers left out.
 * regs[0..12] = r0..r12 at the end, regs[13] = lr, regs[14] = r12 right
 * after the yield. Every register is given back as it came (push/pop), so
 * the compiler sees an ordinary call.
 */
__attribute__((naked, noinline)) void sched_reg_check(struct check_ctx *ctx)
{
    __asm__ volatile(
        "push   {r0, r4-r11, lr}\n"   /* 10 words (8-byte aligned); ctx at [sp] */
        "sub    sp, sp, #8\n"         /* [sp] r0 at the end, [sp+4] r12 after the yield; ctx at [sp+8] */
        "ldr    r12, [r0]\n"          /* the seed */
        ".irp k, 0,1,2,3,4,5,6,7,8,9,10,11\n"
        "eor    r\\k, r12, #((\\k + 1) * 0x11111111)\n"
        ".endr\n"
        "eor    lr, r12, #0xEEEEEEEE\n"
        "ldr    r12, [sp, #8]\n"
        "ldr    r12, [r12, #4]\n"
        ".global sched_spin_a\n"
        "sched_spin_a:\n"
        "subs   r12, r12, #1\n"
        "bne    sched_spin_a\n"
        ".global sched_spin_a_end\n"
        "sched_spin_a_end:\n"
        "ldr    r12, [sp, #8]\n"
        "ldr    r12, [r12]\n"
        "eor    r12, r12, #0xDDDDDDDD\n"
        "svc    #0\n"                 /* the voluntary yield, every register holding its pattern */
        "str    r12, [sp, #4]\n"
        "ldr    r12, [sp, #8]\n"
        "ldr    r12, [r12, #4]\n"
        ".global sched_spin_b\n"
        "sched_spin_b:\n"
        "subs   r12, r12, #1\n"
        "bne    sched_spin_b\n"
        ".global sched_spin_b_end\n"
        "sched_spin_b_end:\n"
        "str    r0, [sp]\n"
        "ldr    r0, [sp, #8]\n"
        "add    r0, r0, #12\n"        /* &ctx->regs[1] */
        "stmia  r0, {r1-r12}\n"       /* regs[1..12] */
        "str    lr, [r0, #48]\n"      /* regs[13] */
        "ldr    r1, [sp, #4]\n"
        "str    r1, [r0, #52]\n"      /* regs[14] */
        "ldr    r1, [sp]\n"
        "str    r1, [r0, #-4]\n"      /* regs[0] */
        "add    sp, sp, #8\n"
        "pop    {r0, r4-r11, pc}\n"
        ".global sched_reg_check_end\n"
        "sched_reg_check_end:\n");
}

static const char *const reg_names[15] = { "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9",
                                           "r10", "r11", "r12", "lr", "r12@yield" };

/* What regs[k] must hold; 0 for r12 (the finished spin counter). */
static uint32_t expected(uint32_t seed, uint32_t k)
{
    if (k < 12)
        return seed ^ ((k + 1) * 0x11111111u);
    if (k == 12)
        return 0;
    return seed ^ (k == 13 ? 0xEEEEEEEEu : 0xDDDDDDDDu);
}
#define CHECKED_REGS 15u
#define CHECKED(k) 1
#else
/*
 * x1 (ra), x4 (tp) and x5-x30 = seed ^ k*0x01010101, x31 = seed across the
 * yield and the spin counter otherwise (ends at 0). Left out: x0, sp, and gp,
 * which the trap handler's C code addresses globals through (linker
 * relaxation); tp is fair game (no thread-local storage here). The frame
 * pointer s0 (x8) is just another register inside this naked function.
 * regs[k] = xk at the end, regs[31] = x31 right after the yield.
 */
__attribute__((naked, noinline)) void sched_reg_check(struct check_ctx *ctx)
{
    __asm__ volatile(
        "addi   sp, sp, -128\n"       /* slot k at 4k: xk saved; slot 0: x31 after the yield */
        ".irp k, 1,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
        "sw     x\\k, (\\k * 4)(sp)\n"
        ".endr\n"                     /* ctx (a0 = x10) at 40(sp) */
        "lw     x31, 0(a0)\n"         /* the seed */
        ".irp k, 1,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30\n"
        "li     x\\k, (\\k * 0x01010101)\n"
        "xor    x\\k, x\\k, x31\n"
        ".endr\n"
        "lw     x31, 40(sp)\n"
        "lw     x31, 4(x31)\n"
        ".global sched_spin_a\n"
        "sched_spin_a:\n"
        "addi   x31, x31, -1\n"
        "bnez   x31, sched_spin_a\n"
        ".global sched_spin_a_end\n"
        "sched_spin_a_end:\n"
        "lw     x31, 40(sp)\n"
        "lw     x31, 0(x31)\n"
        "ecall\n"                     /* the voluntary yield, every register holding its pattern */
        "sw     x31, 0(sp)\n"
        "lw     x31, 40(sp)\n"
        "lw     x31, 4(x31)\n"
        ".global sched_spin_b\n"
        "sched_spin_b:\n"
        "addi   x31, x31, -1\n"
        "bnez   x31, sched_spin_b\n"
        ".global sched_spin_b_end\n"
        "sched_spin_b_end:\n"
        "lw     x31, 40(sp)\n"
        "addi   x31, x31, 8\n"        /* &ctx->regs[0] */
        ".irp k, 1,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30\n"
        "sw     x\\k, (\\k * 4)(x31)\n"
        ".endr\n"
        "lw     x1, 0(sp)\n"
        "sw     x1, 124(x31)\n"       /* regs[31] */
        ".irp k, 1,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
        "lw     x\\k, (\\k * 4)(sp)\n"
        ".endr\n"
        "addi   sp, sp, 128\n"
        "ret\n"
        ".global sched_reg_check_end\n"
        "sched_reg_check_end:\n");
}

static uint32_t expected(uint32_t seed, uint32_t k)
{
    return k == 31 ? seed : seed ^ (k * 0x01010101u);
}
static const char *const reg_names[32] = {
    "x0", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3", "a4", "a5",
    "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4", "t5", "t6@yield"
};
#define CHECKED_REGS 32u
#define CHECKED(k) ((k) == 1 || (k) >= 4)
#endif

static void count_error(void)
{
    uint32_t state = rsim_irq_save(); /* other tasks count too */
    errors++;
    rsim_irq_restore(state);
}

static void run_check(struct check_ctx *c, uint32_t task, uint32_t iteration)
{
    c->seed = (task + 1u) * 0x10001001u ^ iteration * 0x9E3779B9u;
    c->spin = CHECK_SPIN;
    sched_reg_check(c);
    uint32_t bad = 0;
    for (uint32_t k = 0; k < CHECKED_REGS; k++) {
        if (!CHECKED(k) || c->regs[k] == expected(c->seed, k))
            continue;
        if (bad++ == 0 && errors < 10) {
            sched_lock();
            rsim_printf("sched: task %u: %s holds %08x, not %08x\n", task, reg_names[k], c->regs[k],
                        expected(c->seed, k));
            sched_unlock();
        }
    }
    if (bad != 0)
        count_error();
    checks++; /* only a statistic: a lost increment between tasks does not matter */
}

/* ------------------------------------------------------------------------ */
/* Workers and their endpoints                                               */
/* ------------------------------------------------------------------------ */

struct message {
    uint32_t src;
    uint32_t len;
    char data[MSG_MAX];
};

/* One producer (the endpoint callback, in the service task) and one consumer
 * (the worker): the producer writes a slot, then head; the consumer reads a
 * slot, then tail. Switches happen only at traps, so ordering the compiler's
 * accesses is all it takes on one core. */
struct worker {
    struct rsim_rpmsg_ept *ept;
    volatile uint32_t head, tail;
    uint32_t dropped;
    struct message inbox[INBOX_SLOTS];
    struct check_ctx check;
};

static struct worker workers[NWORKERS];

static void on_message(struct rsim_rpmsg_ept *ept, const void *data, uint32_t len, uint32_t src, void *priv)
{
    struct worker *w = &workers[(uintptr_t)priv];
    if (len > MSG_MAX) {
        /* Cannot happen with 512-byte host buffers; say so rather than cut it. */
        w->dropped++;
        rsim_printf("sched: %s dropped a message of %u bytes\n", ept->name, len);
        return;
    }
    /* Inbox full: wait for the worker. The poll is paused here, at a point
     * where the library lets a callback send; so the lock may be opened while
     * we yield: the worker's send (a whole call under its own lock) is then
     * what a send from this callback would be. The host's buffer stays taken
     * meanwhile — back-pressure, nothing is dropped. */
    while (w->head - w->tail >= INBOX_SLOTS) {
        if (lock_depth != 1) /* only the service task's own lock around the poll may be open */
            rsim_panic(PANIC_SCHED | PANIC_LOCK);
        sched_unlock();
        sched_yield();
        sched_lock();
    }
    struct message *m = &w->inbox[w->head % INBOX_SLOTS];
    m->src = src;
    m->len = len;
    const char *s = data;
    for (uint32_t i = 0; i < len; i++)
        m->data[i] = s[i];
    __asm__ volatile("" ::: "memory");
    w->head++;
}

static int is_text(const struct message *m, const char *text)
{
    uint32_t n = 0;
    while (text[n] != '\0')
        n++;
    if (m->len != n)
        return 0;
    for (uint32_t i = 0; i < n; i++)
        if (m->data[i] != text[i])
            return 0;
    return 1;
}

static void serve(struct worker *w, uint32_t task, const struct message *m)
{
    char reply[2 + MSG_MAX];
    int n, query = 1;
    if (is_text(m, "stats?")) {
        n = rsim_snprintf(reply, sizeof reply, "switches %u preempted %u yields %u errors %u", switches, preempted,
                          yields, errors);
    } else if (is_text(m, "checks?")) {
        n = rsim_snprintf(reply, sizeof reply, "checks %u preempted-in-check %u preempted-in-spin %u ticks %u", checks,
                          preempted_in_check, preempted_in_spin, rsim_timer_ticks);
    } else {
        query = 0;
        reply[0] = (char)('0' + task);
        reply[1] = ':';
        for (uint32_t i = 0; i < m->len; i++)
            reply[2 + i] = m->data[i];
        n = (int)(2 + m->len);
    }
    sched_lock();
    if (query) /* the console keeps the answer too: reports cut long messages short */
        rsim_printf("sched: %s: %.*s\n", w->ept->name, n, reply);
    int rc = rsim_rpmsg_send(w->ept, m->src, reply, (uint32_t)n);
    if (rc < 0)
        rsim_printf("sched: %s: reply to %u failed: %d\n", w->ept->name, m->src, rc);
    sched_unlock();
}

static void worker_task(void *arg)
{
    uint32_t task = (uint32_t)(uintptr_t)arg;
    struct worker *w = &workers[task];
    check_context(task);
    for (uint32_t iteration = 0;; iteration++) {
        while (w->tail != w->head) {
            serve(w, task, &w->inbox[w->tail % INBOX_SLOTS]);
            __asm__ volatile("" ::: "memory");
            w->tail++;
        }
        run_check(&w->check, task, iteration); /* yields once inside */
    }
}

#define MILESTONE 10000u

/* The vrings, in thread context: after the mailbox interrupt saw a kick, and
 * once per tick besides — a blocking send that had to wait for a host buffer
 * acknowledges kicks itself (the interrupt never sees those), and one of them
 * may have announced a message. */
static void service_task(void *arg)
{
    (void)arg;
    check_context(SERVICE);
    sched_lock();
    rsim_printf("sched: ready\n");
    sched_unlock();
    uint64_t started_us = rsim_ticks_us();
    uint32_t polled_at = ~0u, milestone = MILESTONE;
    for (;;) {
        if (switches >= milestone) {
            /* For the host to wait on: the time since "sched: ready" at every 10,000 switches. */
            uint32_t ms = (uint32_t)(rsim_ticks_us() - started_us) / 1000u; /* 32 bits: 71 minutes, plenty */
            sched_lock();
            rsim_printf("sched: %u switches in %u ms: preempted %u yields %u errors %u\n", milestone, ms, preempted,
                        yields, errors);
            sched_unlock();
            milestone += MILESTONE;
        }
        uint32_t now = rsim_timer_ticks;
        if (rsim_irq_take_mailbox_events() != 0 || now != polled_at) {
            polled_at = now;
            sched_lock();
            (void)rsim_rpmsg_poll();
            sched_unlock();
        }
        sched_yield();
    }
}

/* ------------------------------------------------------------------------ */
/* Start-up                                                                  */
/* ------------------------------------------------------------------------ */

#if defined(__arm__)
#define SCB_SHPR3 (*(volatile uint32_t *)0xE000ED20u)
#endif

int main(void)
{
    rsim_trace_attach(rsim_trace_buf, RSIM_TRACE_BUF_LEN);
    rsim_irq_init(); /* M4: PendSV at the lowest priority */
#if defined(__arm__)
    /* SysTick above PendSV (0x80 of 0x00-0xF0): the tick may interrupt a
     * switch in progress, which is fine as it only pends the next one. */
    SCB_SHPR3 = (SCB_SHPR3 & 0x00FFFFFFu) | (0x80u << 24);
#endif

    int rc = rsim_rpmsg_init(&rsim_rsc_table.vdev); /* before any task: no lock needed yet */
    if (rc < 0)
        rsim_panic(RSIM_PANIC_RPMSG | (uint16_t)-rc);
    static const char *const names[NWORKERS] = { "sched-0", "sched-1", "sched-2" };
    for (uint32_t i = 0; i < NWORKERS; i++) {
        rc = rsim_rpmsg_create_ept(&workers[i].ept, names[i], RSIM_RPMSG_ADDR_ANY, on_message, (void *)(uintptr_t)i);
        if (rc < 0)
            rsim_panic(RSIM_PANIC_RPMSG | (uint16_t)-rc);
    }

    for (uint32_t i = 0; i < NTASKS; i++) {
        stacks[i][0] = STACK_GUARD;
        saved[i] = rsim_irq_task_frame(&stacks[i][STACK_WORDS], i == SERVICE ? service_task : worker_task,
                                       (void *)(uintptr_t)i);
    }

    running = 1;
    rsim_irq_enable_mailbox();
    rsim_timer_start(TICK_HZ);
    rsim_irq_enable();
    sched_yield(); /* the first switch starts the service task; main is never resumed */
    rsim_panic(PANIC_SCHED | PANIC_START);
}
