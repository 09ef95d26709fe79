/*
 * hang — arms the watchdog (20 ms), kicks it a few times, then spins forever
 * without kicking it and without idling (no WAIT), so the watchdog fires.
 */
#include "rsim_printf.h"
#include "rsim_rpmsg.h"

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);

#define HANG_WATCHDOG_MS 20u
#define HANG_KICKS       5

int main(void)
{
    rsim_watchdog(HANG_WATCHDOG_MS);
    for (int i = 0; i < HANG_KICKS; i++)
        rsim_watchdog(HANG_WATCHDOG_MS);
    rsim_printf("hang: spinning without kicking the watchdog\n");
    for (;;)
        __asm__ volatile("" ::: "memory"); /* busy: no WAIT, no wfi */
}
