/*
 * rsim_printf.h — a tiny printf for rsim firmware, and the trace buffer.
 *
 * Conversions: %d %i %u %x %X %s %c %p %%, with the flags '-' (left-justify)
 * and '0' (zero-pad numbers), a width (digits or '*'), a precision for %s
 * only (".N" or ".*": at most N bytes), and the length modifiers 'l' / 'z'
 * (accepted and ignored: long and size_t are 32 bits on both cores). No
 * floating point, no 64-bit integers. %p prints 0x and 8 hex digits.
 *
 * Outputs ("sinks"):
 *   RSIM_OUT_CONSOLE  the mailbox CONSOLE register (a host console line per '\n')
 *   RSIM_OUT_TRACE    the RSC_TRACE buffer attached with rsim_trace_attach()
 *                     (a NUL-terminated ring the host reads as console output)
 */
#ifndef RSIM_PRINTF_H
#define RSIM_PRINTF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define RSIM_OUT_CONSOLE 1u
#define RSIM_OUT_TRACE   2u
#define RSIM_OUT_BOTH    (RSIM_OUT_CONSOLE | RSIM_OUT_TRACE)

#define RSIM_PRINTF_FORMAT(fmt_index, first_arg) \
    __attribute__((format(printf, fmt_index, first_arg)))

/* Makes `buf` (len bytes, normally the buffer a resource-table trace entry
 * names) the trace ring and clears it. len < 2 detaches. The last byte always
 * stays NUL; the ring wraps to the start when full. */
void rsim_trace_attach(char *buf, uint32_t len);
void rsim_trace_putc(char c);
void rsim_trace_puts(const char *s);

/* To the CONSOLE register. Return the number of characters produced. */
int rsim_printf(const char *fmt, ...) RSIM_PRINTF_FORMAT(1, 2);
/* To the trace buffer (nothing when none is attached). */
int rsim_trace_printf(const char *fmt, ...) RSIM_PRINTF_FORMAT(1, 2);
/* To any combination of RSIM_OUT_* sinks. */
int rsim_printf_to(unsigned sinks, const char *fmt, ...) RSIM_PRINTF_FORMAT(2, 3);
int rsim_vprintf_to(unsigned sinks, const char *fmt, va_list ap);

/* Into `buf` (always NUL-terminated when size > 0). Returns the length the
 * full output would have had, as C's snprintf. */
int rsim_snprintf(char *buf, size_t size, const char *fmt, ...) RSIM_PRINTF_FORMAT(3, 4);
int rsim_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);

#endif /* RSIM_PRINTF_H */
