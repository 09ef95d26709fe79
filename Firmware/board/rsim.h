/*
 * rsim.h — board support for the swift-remoteproc simulated board ("rsim").
 *
 * This header is the hardware contract firmware is written against: the
 * memory map as the remote core sees it (device addresses) and the mailbox
 * registers. See the design document, section "The simulated board", and
 * Firmware/README.md.
 *
 * Freestanding: needs only the compiler's own <stdint.h>; no libc.
 */
#ifndef RSIM_H
#define RSIM_H

#include <stdint.h>

/* ------------------------------------------------------------------------ */
/* Memory map (device addresses)                                             */
/* ------------------------------------------------------------------------ */

#define RSIM_CODE_BASE      0x00000000u /* text, rodata, vectors, .data image */
#define RSIM_CODE_SIZE      0x00040000u /* 256 KiB */

#define RSIM_SRAM_BASE      0x20000000u /* data, bss, stack, resource table */
#define RSIM_SRAM_SIZE      0x00040000u /* 256 KiB */
#define RSIM_SRAM_TOP       (RSIM_SRAM_BASE + RSIM_SRAM_SIZE) /* initial sp */

#define RSIM_SHARED_BASE    0x30000000u /* vrings and RPMsg buffers */
#define RSIM_SHARED_SIZE    0x00100000u /* 1 MiB */

#define RSIM_MBOX_BASE      0x40000000u /* mailbox MMIO */
#define RSIM_MBOX_SIZE      0x00001000u /* 4 KiB */

/* ------------------------------------------------------------------------ */
/* Mailbox registers (32-bit, little-endian), offsets from RSIM_MBOX_BASE    */
/* ------------------------------------------------------------------------ */

#define RSIM_MBOX_MAGIC     0x00u /* R   0x5253494D ("RSIM") */
#define RSIM_MBOX_VERSION   0x04u /* R   3 (2 added power management, 3 interrupts) */
#define RSIM_MBOX_KICK      0x08u /* W   notify the host: value = notify id 0..31 */
#define RSIM_MBOX_PENDING   0x0Cu /* R   bit n: host kicked notify id n, not yet acked */
#define RSIM_MBOX_ACK       0x10u /* W1C clear PENDING bits */
#define RSIM_MBOX_WAIT      0x14u /* R   block until PENDING != 0, SLEEP deadline or stop;
                                   *     returns PENDING (not cleared), 0 on stop/deadline */
#define RSIM_MBOX_CONSOLE   0x18u /* W   low byte appended to the console */
#define RSIM_MBOX_PANIC     0x1Cu /* W   fatal error: core halts, host sees a crash with this code */
#define RSIM_MBOX_TICKS_LO  0x20u /* R   microseconds since start, low word (latches HI) */
#define RSIM_MBOX_TICKS_HI  0x24u /* R   high word */
#define RSIM_MBOX_WATCHDOG  0x28u /* W   arm/kick: timeout in ms, 0 disarms */
#define RSIM_MBOX_SLEEP     0x2Cu /* W   sleep value us, or until PENDING != 0 or stop */
/* Version 2: suspend/resume handshake (see rsim_pm.h and docs/remotesim.md). */
#define RSIM_MBOX_PM_CONTROL 0x30u /* RW  bit 0: the firmware answers suspend requests */
#define RSIM_MBOX_PM_REQUEST 0x34u /* R   0 none, 1 auto (runtime PM), 2 system */
#define RSIM_MBOX_PM_REPLY   0x38u /* W   1 ACK (quiesced: gate my clock), 2 CANCEL */
#define RSIM_MBOX_PM_STATUS  0x3Cu /* R   bit 0 RESUMED (W1C), bit 1 a request awaits an answer */
/* Version 3: interrupts (rsim_irq.h and docs/remotesim.md). */
#define RSIM_MBOX_CORE_CLOCK 0x40u /* R   the core clock in Hz (what the timers count at); 0: none */
#define RSIM_MBOX_IRQ_ENABLE 0x44u /* RW  PENDING bits that raise the core's mailbox interrupt (0 after reset) */

#define RSIM_PM_CONTROL_ANSWERS 0x1u
#define RSIM_PM_REQUEST_NONE    0u
#define RSIM_PM_REQUEST_AUTO    1u
#define RSIM_PM_REQUEST_SYSTEM  2u
#define RSIM_PM_REPLY_ACK       1u
#define RSIM_PM_REPLY_CANCEL    2u
#define RSIM_PM_STATUS_RESUMED  0x1u
#define RSIM_PM_STATUS_REQUEST  0x2u

#define RSIM_MAGIC_VALUE    0x5253494Du /* "RSIM" */
#define RSIM_VERSION_VALUE  3u
#define RSIM_VERSION_PM     2u /* the first version with the PM registers */
#define RSIM_VERSION_IRQ    3u /* the first with CORE_CLOCK and the mailbox as an interrupt */
#define RSIM_NOTIFY_ID_MAX  31u /* KICK values above this are firmware errors */

/* ------------------------------------------------------------------------ */
/* Interrupts and timers (docs/remotesim.md, "Interrupts and timers")        */
/* ------------------------------------------------------------------------ */

/* The core clock the timers count at when the board does not say (CORE_CLOCK
 * reads 0, or a version-2 board): the board's default. rsim_core_clock_hz()
 * reads what this board runs at (board option core-clock). */
#ifndef RSIM_CORE_CLOCK_HZ
#define RSIM_CORE_CLOCK_HZ  100000000u
#endif

/* RV32: a CLINT (the SiFive layout RISC-V RTOS ports expect). The mailbox's
 * PENDING & IRQ_ENABLE != 0 is the machine external interrupt (mip.MEIP); ACK
 * lowers it. */
#define RSIM_CLINT_BASE      0x02000000u
#define RSIM_CLINT_MSIP      0x0000u /* RW  bit 0: machine software interrupt */
#define RSIM_CLINT_MTIMECMP  0x4000u /* RW  64-bit compare, low word (high at +4) */
#define RSIM_CLINT_MTIME     0xBFF8u /* RW  64-bit core-clock count, low word (high at +4) */

/* ------------------------------------------------------------------------ */
/* Accessors                                                                 */
/* ------------------------------------------------------------------------ */

/* Compiler + CPU memory barrier: orders shared-memory accesses against MMIO. */
static inline void rsim_mb(void)
{
#if defined(__arm__) || defined(__thumb__)
    __asm__ volatile("dmb" ::: "memory");
#elif defined(__riscv)
    __asm__ volatile("fence rw, rw" ::: "memory");
#else
    __asm__ volatile("" ::: "memory");
#endif
}

static inline uint32_t rsim_mbox_read(uint32_t offset)
{
    return *(volatile uint32_t *)(uintptr_t)(RSIM_MBOX_BASE + offset);
}

static inline void rsim_mbox_write(uint32_t offset, uint32_t value)
{
    *(volatile uint32_t *)(uintptr_t)(RSIM_MBOX_BASE + offset) = value;
}

/* Notify the host on notify id `id` (0..31). Prior shared-memory writes
 * (vring updates) are made visible first. */
static inline void rsim_kick(uint32_t id)
{
    rsim_mb();
    rsim_mbox_write(RSIM_MBOX_KICK, id);
}

/* Bit n set: the host kicked notify id n since it was last acknowledged. */
static inline uint32_t rsim_pending(void)
{
    return rsim_mbox_read(RSIM_MBOX_PENDING);
}

/* Clear PENDING bits (write 1 to clear). Ack before processing the vrings. */
static inline void rsim_ack(uint32_t bits)
{
    rsim_mbox_write(RSIM_MBOX_ACK, bits);
    rsim_mb();
}

/* Block until PENDING != 0, a SLEEP deadline passes, or a stop is requested.
 * Returns PENDING without clearing it (0 when released by a stop/deadline). */
static inline uint32_t rsim_wait(void)
{
    uint32_t pending = rsim_mbox_read(RSIM_MBOX_WAIT);
    rsim_mb();
    return pending;
}

/* Idle with the CPU's own wait-for-interrupt instruction; returns once
 * PENDING != 0 or on a stop (no interrupt is actually delivered). */
static inline void rsim_wfi(void)
{
    __asm__ volatile("wfi" ::: "memory");
}

static inline void rsim_console_putc(char c)
{
    rsim_mbox_write(RSIM_MBOX_CONSOLE, (uint32_t)(unsigned char)c);
}

static inline void rsim_console_puts(const char *s)
{
    while (*s != '\0')
        rsim_console_putc(*s++);
}

/* Firmware-detected fatal error: the core halts, the host sees a crash. */
__attribute__((noreturn)) static inline void rsim_panic(uint32_t code)
{
    rsim_mbox_write(RSIM_MBOX_PANIC, code);
    for (;;)
        (void)rsim_mbox_read(RSIM_MBOX_WAIT);
}

/* Microseconds since start. LO is read first; reading it latches HI. */
static inline uint64_t rsim_ticks_us(void)
{
    uint32_t lo = rsim_mbox_read(RSIM_MBOX_TICKS_LO);
    uint32_t hi = rsim_mbox_read(RSIM_MBOX_TICKS_HI);
    return ((uint64_t)hi << 32) | lo;
}

/* Arm or kick the watchdog with a timeout in ms; 0 disarms it. */
static inline void rsim_watchdog(uint32_t ms)
{
    rsim_mbox_write(RSIM_MBOX_WATCHDOG, ms);
}

/* Sleep `us` microseconds, or until PENDING != 0, or a stop. */
static inline void rsim_sleep_us(uint32_t us)
{
    rsim_mbox_write(RSIM_MBOX_SLEEP, us);
}

/* The core clock in Hz: CORE_CLOCK on a version-3 board, else the default. */
static inline uint32_t rsim_core_clock_hz(void)
{
    uint32_t hz = rsim_mbox_read(RSIM_MBOX_VERSION) >= RSIM_VERSION_IRQ ? rsim_mbox_read(RSIM_MBOX_CORE_CLOCK) : 0u;
    return hz != 0u ? hz : RSIM_CORE_CLOCK_HZ;
}

/* True when the mailbox identifies itself as an rsim mailbox (any version:
 * each version keeps every register of the ones before). */
static inline int rsim_mbox_present(void)
{
    return rsim_mbox_read(RSIM_MBOX_MAGIC) == RSIM_MAGIC_VALUE &&
           rsim_mbox_read(RSIM_MBOX_VERSION) >= 1u;
}

#endif /* RSIM_H */
