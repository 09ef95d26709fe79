/*
 * count — prints 1, 2, 3, … on CONSOLE, one number per line, as fast as it can, forever: a core
 * that is always busy with stores to RAM and to the mailbox. The host checks that the lines are
 * consecutive: any instruction executed twice (or skipped) when the core is stopped and
 * continued — suspended, halted by a debugger — shows as a repeated or missing character.
 */
#include "rsim.h"
#include "rsim_rpmsg.h"

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);

volatile uint32_t count_value;

int main(void)
{
    for (;;) {
        uint32_t n = count_value + 1;
        count_value = n;
        char digits[12];
        int i = 0;
        do {
            digits[i++] = (char)('0' + n % 10);
            n /= 10;
        } while (n != 0);
        while (i > 0)
            rsim_console_putc(digits[--i]);
        rsim_console_putc('\n');
    }
}
