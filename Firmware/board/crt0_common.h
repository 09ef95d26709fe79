/*
 * crt0_common.h — start-up pieces shared by the per-core crt0.c files.
 * Included once, by crt0.c only (it defines functions).
 */
#ifndef RSIM_CRT0_COMMON_H
#define RSIM_CRT0_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "rsim.h"

extern int main(void);

/* Symbols from link.ld. */
extern uint32_t _stack_top[];
extern uint32_t _sidata[], _sdata[], _edata[];
extern uint32_t _sbss[], _ebss[];

/* Copy .data from its load address (CODE) to its run address (SRAM), zero
 * .bss, call main(), and idle on WAIT should main return. */
__attribute__((noreturn)) static inline void rsim_c_runtime_start(void)
{
    const volatile uint32_t *src = _sidata;
    for (volatile uint32_t *dst = _sdata; dst < _edata;)
        *dst++ = *src++;

    for (volatile uint32_t *dst = _sbss; dst < _ebss;)
        *dst++ = 0;

    rsim_mb();
    (void)main();

    for (;;)
        (void)rsim_wait();
}

/*
 * The compiler may emit calls to these even in freestanding code (struct
 * copies and initialisations). Weak, so a program or library may provide
 * faster ones; no_builtin keeps the loops from being turned back into calls
 * to themselves.
 */
__attribute__((weak, no_builtin)) void *memcpy(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

__attribute__((weak, no_builtin)) void *memmove(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (d < s) {
        while (n--)
            *d++ = *s++;
    } else {
        while (n--)
            d[n] = s[n];
    }
    return dst;
}

__attribute__((weak, no_builtin)) void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = dst;
    while (n--)
        *d++ = (uint8_t)c;
    return dst;
}

__attribute__((weak, no_builtin)) int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    for (; n; n--, x++, y++) {
        if (*x != *y)
            return (int)*x - (int)*y;
    }
    return 0;
}

#endif /* RSIM_CRT0_COMMON_H */
