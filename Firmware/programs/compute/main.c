/*
 * compute — a fixed compute loop for measuring emulation speed: ITERATIONS passes of a
 * 4-instruction loop (add, xor, subtract, branch), then "compute: done <result>" on CONSOLE.
 * The host times start → that line; instructions = 4 × ITERATIONS (+ a few hundred).
 */
#include "rsim.h"
#include "rsim_printf.h"
#include "rsc_table.h"
#include "rsim_rpmsg.h"

#define ITERATIONS 50000000u

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);

int main(void)
{
    uint32_t counter = ITERATIONS, acc = 1, mix = 0x9E3779B9u;
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
    rsim_printf("compute: done %x\n", acc);
    for (;;)
        rsim_wait();
}
