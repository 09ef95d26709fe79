/*
 * illegal — prints a line, then executes an undefined instruction in `execute_illegal`
 * (Thumb `udf #0`, RISC-V `unimp`): the core faults with an illegal instruction there.
 */
#include "rsim.h"
#include "rsim_printf.h"
#include "rsc_table.h"
#include "rsim_rpmsg.h"

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);

__attribute__((noinline, used)) void execute_illegal(void)
{
#if defined(__arm__)
    __asm__ volatile("udf #0");
#else
    __asm__ volatile("unimp");
#endif
}

int main(void)
{
    rsim_printf("illegal: executing an undefined instruction\n");
    execute_illegal();
    rsim_panic(0x1111); /* not reached */
}
