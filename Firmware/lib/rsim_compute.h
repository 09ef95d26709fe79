/*
 * rsim_compute.h — the fixed compute loop the speed measurements run (compute, compute-irq):
 * `iterations` passes of 4 instructions (add, xor, subtract, branch), so instructions are
 * 4 × iterations. Returns the accumulated value (printed, so the loop is not optimised away).
 */
#ifndef RSIM_COMPUTE_H
#define RSIM_COMPUTE_H

#include <stdint.h>

static inline uint32_t rsim_compute_loop(uint32_t iterations)
{
    uint32_t counter = iterations, acc = 1, mix = 0x9E3779B9u;
#if defined(__arm__)
    __asm__ volatile("1: adds %0, %0, %1\n"
                     "   eors %0, %0, %2\n"
                     "   subs %1, %1, #1\n"
                     "   bne 1b\n"
                     : "+r"(acc), "+r"(counter) : "r"(mix) : "cc");
#else
    __asm__ volatile("1: add %0, %0, %1\n"
                     "   xor %0, %0, %2\n"
                     "   addi %1, %1, -1\n"
                     "   bnez %1, 1b\n"
                     : "+r"(acc), "+r"(counter) : "r"(mix));
#endif
    return acc;
}

#endif /* RSIM_COMPUTE_H */
