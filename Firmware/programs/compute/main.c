/*
 * compute — a fixed compute loop for measuring emulation speed: ITERATIONS passes of a
 * 4-instruction loop (add, xor, subtract, branch), then "compute: done <result>" on CONSOLE.
 * The host times start → that line; instructions = 4 × ITERATIONS (+ a few hundred).
 */
#include "rsim.h"
#include "rsim_compute.h"
#include "rsim_printf.h"
#include "rsc_table.h"
#include "rsim_rpmsg.h"

#define ITERATIONS 50000000u

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);

int main(void)
{
    uint32_t acc = rsim_compute_loop(ITERATIONS);
    rsim_printf("compute: done %x\n", acc);
    for (;;)
        rsim_wait();
}
