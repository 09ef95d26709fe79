/*
 * rsim_irq.h — interrupt-driven firmware on the rsim board.
 *
 * RV32 (machine mode): rsim_irq_init() points mtvec at rsim_irq_trap_entry
 * (direct mode). The entry saves the interrupted context — every register but
 * sp, plus mepc and mstatus — as a struct rsim_irq_frame on the current stack
 * and calls the dispatcher with it; the frame the dispatcher returns is the
 * one restored, so a scheduler switches tasks by returning another task's
 * frame. Sources: the mailbox (PENDING != 0) on the machine external
 * interrupt, the CLINT's timer (mtime/mtimecmp) and software interrupt
 * (msip), and ecall.
 *
 * The mailbox interrupt is handled here: the pending bits are acknowledged
 * and added to rsim_irq_mailbox_events; thread code takes them with
 * rsim_irq_take_mailbox_events() (rsim_rpmsg_irq_wait_and_poll() does, then
 * processes the vrings). Because the interrupt acknowledges only the bits it
 * read (write 1 to clear), a kick arriving meanwhile stays pending and
 * interrupts again: none is lost.
 *
 * Hooks a program may define (weak defaults here, doing nothing):
 *   void rsim_irq_on_mailbox(uint32_t pending)   after the acknowledgement
 *   void rsim_irq_on_tick(void)                  periodic timer (RV32 mtimecmp, M4 SysTick)
 *   void rsim_irq_on_software(void)              RV32 msip (cleared first), M4 PendSV
 *   void rsim_irq_on_syscall(void)               RV32 ecall (mepc already past it), M4 SVC
 *   struct rsim_irq_frame *rsim_irq_schedule(struct rsim_irq_frame *)  the context switch
 * Any other RV32 trap panics with RSIM_PANIC_TRAP | mcause's code (bit 15: an interrupt).
 *
 * Cortex-M4 (ARMv7-M): crt0's vector table names the SVC, PendSV, SysTick and
 * mailbox (IRQ 0) handlers here; rsim_irq_init() puts PendSV at the lowest
 * priority. PendSV is the context-switch point (the ARMv7-M convention: it
 * runs only once no other handler is active): when it interrupted Thread mode
 * on the process stack (PSP) it pushes r4-r11 below the 8-word frame the core
 * stacked there, so the whole context is a struct rsim_irq_frame at the new
 * PSP, calls rsim_irq_on_software() and then rsim_irq_schedule(frame), and
 * restores the frame that returns (PSP = its end, EXC_RETURN 0xFFFFFFFD).
 * When PendSV interrupted code on the main stack (MSP) it passes NULL; a
 * non-NULL answer then starts that frame on the PSP (how a scheduler starts
 * its first task), NULL returns where PendSV came from.
 */
#ifndef RSIM_IRQ_H
#define RSIM_IRQ_H

#include <stdint.h>

#include "rsim.h"

#define RSIM_PANIC_TRAP 0xE1000000u

/* Returned from a task's entry function (rsim_irq_task_frame): nothing to return to. */
#define RSIM_PANIC_TASK_RETURNED 0xE2000000u

#if defined(__arm__)
/* The saved context (Cortex-M4): r4-r11 as PendSV pushes them, then the
 * 8-word frame exception entry stacked (r0-r3, r12, lr, the return address,
 * xPSR). The task's sp is the frame's address + sizeof (+ 4 when xPSR bit 9
 * says the core padded the stack to 8 bytes). */
struct rsim_irq_frame {
    uint32_t r4, r5, r6, r7, r8, r9, r10, r11;
    uint32_t r0, r1, r2, r3, r12, lr, pc, xpsr;
};
#else
/* The saved context (RV32): x[1], x[3]..x[31] (x[0] and x[2] unused: sp is the
 * frame's own address + sizeof), mepc and mstatus. 16-byte aligned. */
struct rsim_irq_frame {
    uint32_t mepc;
    uint32_t x[32];
    uint32_t mstatus;
    uint32_t reserved[2];
};
#endif

/*
 * The context-switch hook (weak default: returns `current`). `current` is the
 * interrupted context; return the one to resume — another task's saved frame
 * switches to that task (keep `current` to come back to it later).
 *   RV32: called at the end of every trap (interrupt or ecall), with
 *         interrupts disabled; `current` is never NULL.
 *   M4:   called from PendSV only, with PRIMASK set; `current` is NULL when
 *         PendSV interrupted main-stack code (see above). Pend PendSV
 *         (rsim_irq_raise_software()) from a tick or SVC hook to get here.
 */
struct rsim_irq_frame *rsim_irq_schedule(struct rsim_irq_frame *current);

/*
 * Builds the first context of a task at the top of its stack (`stack_top`,
 * one past the end; rounded down to 16 bytes on RV32, 8 on M4): resuming it
 * (returning it from rsim_irq_schedule) calls entry(arg) in Thread / machine
 * mode with interrupts enabled (M4: on the process stack). Every other
 * register starts at 0 (RV32: gp and tp are the caller's). Returning from
 * `entry` panics with RSIM_PANIC_TASK_RETURNED.
 */
struct rsim_irq_frame *rsim_irq_task_frame(void *stack_top, void (*entry)(void *), void *arg);

/* Installs the trap vector. Interrupts stay disabled until rsim_irq_enable(). */
void rsim_irq_init(void);

/* Globally enables / disables interrupts; rsim_irq_save() disables and returns
 * the previous state for rsim_irq_restore(). */
void rsim_irq_enable(void);
void rsim_irq_disable(void);
uint32_t rsim_irq_save(void);
void rsim_irq_restore(uint32_t state);

/* Lets the mailbox interrupt in: every PENDING bit raises it (IRQ_ENABLE) and
 * the CPU takes it (it still needs rsim_irq_enable()). */
void rsim_irq_enable_mailbox(void);

/* Mailbox bits acknowledged by the interrupt since the last call. */
uint32_t rsim_irq_take_mailbox_events(void);

/* Idles until an interrupt has been taken (race-free: interrupts are
 * disabled while deciding to sleep; wfi wakes on a pending one). */
void rsim_irq_wait(void);

/* The core timer: `hz` ticks per second from the core clock (rsim_core_clock_hz());
 * each tick calls rsim_irq_on_tick(). 0 stops it. */
void rsim_timer_start(uint32_t hz);
extern volatile uint32_t rsim_timer_ticks;

/* The core's cycle time base (RV32: the CLINT's mtime). */
uint64_t rsim_timer_now(void);

/* Raises the software interrupt (RV32: msip; M4: pends PendSV). */
void rsim_irq_raise_software(void);

#endif /* RSIM_IRQ_H */
