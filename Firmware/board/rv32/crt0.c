/*
 * crt0.c — start-up code for the rsim board, RV32IMAC core.
 *
 * The core starts at the ELF entry point (_start, placed first in CODE).
 * _start sets sp to the top of sram (the simulator does too, but a real
 * core does not) and gp for linker relaxation, then the C runtime copies
 * .data from its load image in CODE, zeroes .bss, calls main() and idles on
 * the mailbox WAIT register if main returns.
 */
#include "crt0_common.h"

__attribute__((noreturn, used)) void rsim_rv32_c_start(void)
{
    rsim_c_runtime_start();
}

__attribute__((naked, noreturn, section(".text.start"))) void _start(void)
{
    __asm__ volatile(
        ".option push\n"
        ".option norelax\n"
        "la   gp, __global_pointer$\n"
        ".option pop\n"
        "la   sp, _stack_top\n"
        "andi sp, sp, -16\n"
        "j    rsim_rv32_c_start\n");
}
