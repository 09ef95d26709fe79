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
 * Hooks a program may define (weak defaults here):
 *   void rsim_irq_on_mailbox(uint32_t pending)          after the acknowledgement
 *   struct rsim_irq_frame *rsim_irq_on_tick(struct rsim_irq_frame *)   periodic timer
 *   struct rsim_irq_frame *rsim_irq_on_software(struct rsim_irq_frame *) msip (cleared first)
 *   struct rsim_irq_frame *rsim_irq_on_ecall(struct rsim_irq_frame *)  mepc already past the ecall
 * Any other trap panics with RSIM_PANIC_TRAP | mcause's code (bit 15: an interrupt).
 */
#ifndef RSIM_IRQ_H
#define RSIM_IRQ_H

#include <stdint.h>

#include "rsim.h"

#define RSIM_PANIC_TRAP 0xE1000000u

/* The saved context (RV32): x[1], x[3]..x[31] (x[0] and x[2] unused: sp is the
 * frame's own address + sizeof), mepc and mstatus. 16-byte aligned. */
struct rsim_irq_frame {
    uint32_t mepc;
    uint32_t x[32];
    uint32_t mstatus;
    uint32_t reserved[2];
};

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

/* Raises the software interrupt (RV32: msip). */
void rsim_irq_raise_software(void);

#endif /* RSIM_IRQ_H */
