/*
 * rsim_printf.c — tiny printf and trace ring. See rsim_printf.h.
 */
#include "rsim_printf.h"

#include "rsim.h"

/* ------------------------------------------------------------------------ */
/* Trace ring                                                                */
/* ------------------------------------------------------------------------ */

static volatile char *trace_buf;
static uint32_t trace_len;
static uint32_t trace_pos;

void rsim_trace_attach(char *buf, uint32_t len)
{
    if (buf == 0 || len < 2u) {
        trace_buf = 0;
        trace_len = 0;
        return;
    }
    trace_buf = buf;
    trace_len = len;
    trace_pos = 0;
    for (uint32_t i = 0; i < len; i++)
        trace_buf[i] = '\0';
}

/* The host reads the text up to the first NUL. Write the new terminator
 * first, then the character over the old one, so the string the host sees
 * never runs into stale bytes. Positions 0..len-2 hold text; len-1 stays NUL. */
void rsim_trace_putc(char c)
{
    if (trace_buf == 0)
        return;
    uint32_t next = trace_pos + 1u;
    if (next >= trace_len - 1u)
        next = 0;
    trace_buf[next] = '\0';
    trace_buf[trace_pos] = c;
    trace_pos = next;
}

void rsim_trace_puts(const char *s)
{
    while (*s != '\0')
        rsim_trace_putc(*s++);
}

/* ------------------------------------------------------------------------ */
/* Formatter                                                                 */
/* ------------------------------------------------------------------------ */

struct out {
    unsigned sinks; /* RSIM_OUT_* */
    char *buf;      /* snprintf target, or 0 */
    size_t size;
    size_t count;   /* characters produced so far */
};

static void emit(struct out *o, char c)
{
    if (o->sinks & RSIM_OUT_CONSOLE)
        rsim_console_putc(c);
    if (o->sinks & RSIM_OUT_TRACE)
        rsim_trace_putc(c);
    if (o->buf != 0 && o->count + 1u < o->size)
        o->buf[o->count] = c;
    o->count++;
}

static void emit_n(struct out *o, char c, int n)
{
    while (n-- > 0)
        emit(o, c);
}

/* One field: an optional sign/prefix, `len` body bytes, padded to `width`. */
static void emit_field(struct out *o, const char *prefix, const char *body, int len, int width,
                       int left, int zero)
{
    int plen = 0;
    while (prefix[plen] != '\0')
        plen++;
    int pad = width - plen - len;
    if (!left && !zero)
        emit_n(o, ' ', pad);
    for (int i = 0; i < plen; i++)
        emit(o, prefix[i]);
    if (!left && zero)
        emit_n(o, '0', pad);
    for (int i = 0; i < len; i++)
        emit(o, body[i]);
    if (left)
        emit_n(o, ' ', pad);
}

/* Digits of v in base 10 or 16 into the end of tmp[12]; returns the start. */
static char *utoa(uint32_t v, unsigned base, int upper, char tmp[12])
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char *p = tmp + 11;
    *p = '\0';
    do {
        *--p = digits[v % base];
        v /= base;
    } while (v != 0);
    return p;
}

static void format(struct out *o, const char *fmt, va_list ap)
{
    char tmp[12];

    while (*fmt != '\0') {
        char c = *fmt++;
        if (c != '%') {
            emit(o, c);
            continue;
        }

        int left = 0, zero = 0, width = 0, prec = -1;
        for (;; fmt++) {
            if (*fmt == '-')
                left = 1;
            else if (*fmt == '0')
                zero = 1;
            else
                break;
        }
        if (*fmt == '*') {
            width = va_arg(ap, int);
            if (width < 0) {
                left = 1;
                width = -width;
            }
            fmt++;
        } else {
            while (*fmt >= '0' && *fmt <= '9')
                width = width * 10 + (*fmt++ - '0');
        }
        if (*fmt == '.') {
            fmt++;
            prec = 0;
            if (*fmt == '*') {
                prec = va_arg(ap, int);
                fmt++;
            } else {
                while (*fmt >= '0' && *fmt <= '9')
                    prec = prec * 10 + (*fmt++ - '0');
            }
        }
        while (*fmt == 'l' || *fmt == 'z')
            fmt++;

        char conv = *fmt;
        if (conv == '\0')
            break;
        fmt++;

        switch (conv) {
        case 'd':
        case 'i': {
            int v = va_arg(ap, int);
            uint32_t u = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
            char *s = utoa(u, 10, 0, tmp);
            emit_field(o, v < 0 ? "-" : "", s, (int)(tmp + 11 - s), width, left, zero);
            break;
        }
        case 'u':
        case 'x':
        case 'X': {
            uint32_t u = va_arg(ap, unsigned);
            char *s = utoa(u, conv == 'u' ? 10u : 16u, conv == 'X', tmp);
            emit_field(o, "", s, (int)(tmp + 11 - s), width, left, zero);
            break;
        }
        case 'p': {
            uint32_t u = (uint32_t)(uintptr_t)va_arg(ap, void *);
            char *s = utoa(u, 16, 0, tmp);
            int len = (int)(tmp + 11 - s);
            /* Always 8 digits: 0x0000abcd. */
            emit_field(o, "0x", "00000000", 8 - len, 0, 0, 0);
            emit_field(o, "", s, len, 0, 0, 0);
            break;
        }
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (s == 0)
                s = "(null)";
            int len = 0;
            while ((prec < 0 || len < prec) && s[len] != '\0')
                len++;
            emit_field(o, "", s, len, width, left, 0);
            break;
        }
        case 'c': {
            char ch = (char)va_arg(ap, int);
            emit_field(o, "", &ch, 1, width, left, 0);
            break;
        }
        case '%':
            emit(o, '%');
            break;
        default: /* unknown: print it as written */
            emit(o, '%');
            emit(o, conv);
            break;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Entry points                                                              */
/* ------------------------------------------------------------------------ */

int rsim_vprintf_to(unsigned sinks, const char *fmt, va_list ap)
{
    struct out o = { .sinks = sinks, .buf = 0, .size = 0, .count = 0 };
    format(&o, fmt, ap);
    return (int)o.count;
}

int rsim_printf_to(unsigned sinks, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = rsim_vprintf_to(sinks, fmt, ap);
    va_end(ap);
    return n;
}

int rsim_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = rsim_vprintf_to(RSIM_OUT_CONSOLE, fmt, ap);
    va_end(ap);
    return n;
}

int rsim_trace_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = rsim_vprintf_to(RSIM_OUT_TRACE, fmt, ap);
    va_end(ap);
    return n;
}

int rsim_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct out o = { .sinks = 0, .buf = buf, .size = size, .count = 0 };
    format(&o, fmt, ap);
    if (size > 0)
        buf[o.count < size ? o.count : size - 1u] = '\0';
    return (int)o.count;
}

int rsim_snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = rsim_vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}
