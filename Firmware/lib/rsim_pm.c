/*
 * rsim_pm.c — the suspend/resume handshake, firmware side. See rsim_pm.h.
 */
#include "rsim.h"
#include "rsim_pm.h"

static struct {
    int enabled;
    rsim_pm_decide_fn decide;
    rsim_pm_resumed_fn resumed;
    void *priv;
    struct rsim_pm_counts counts;
} pm;

void rsim_pm_enable(rsim_pm_decide_fn decide, rsim_pm_resumed_fn resumed, void *priv)
{
    pm.decide = decide;
    pm.resumed = resumed;
    pm.priv = priv;
    pm.enabled = rsim_mbox_read(RSIM_MBOX_VERSION) >= RSIM_VERSION_PM;
    if (pm.enabled)
        rsim_mbox_write(RSIM_MBOX_PM_CONTROL, RSIM_PM_CONTROL_ANSWERS);
}

void rsim_pm_disable(void)
{
    if (pm.enabled)
        rsim_mbox_write(RSIM_MBOX_PM_CONTROL, 0);
    pm.enabled = 0;
}

int rsim_pm_poll(void)
{
    if (!pm.enabled)
        return 0;
    int done = 0;
    uint32_t status = rsim_mbox_read(RSIM_MBOX_PM_STATUS);
    if (status & RSIM_PM_STATUS_RESUMED) {
        rsim_mbox_write(RSIM_MBOX_PM_STATUS, RSIM_PM_STATUS_RESUMED);
        pm.counts.resumed++;
        done |= 2;
        if (pm.resumed)
            pm.resumed(pm.priv);
    }
    if (status & RSIM_PM_STATUS_REQUEST) {
        uint32_t request = rsim_mbox_read(RSIM_MBOX_PM_REQUEST);
        if (request == RSIM_PM_REQUEST_AUTO || request == RSIM_PM_REQUEST_SYSTEM) {
            enum rsim_pm_answer answer =
                pm.decide ? pm.decide((enum rsim_pm_request)request, pm.priv) : RSIM_PM_ACK;
            if (answer != RSIM_PM_CANCEL)
                answer = RSIM_PM_ACK;
            if (answer == RSIM_PM_ACK)
                pm.counts.acked++;
            else
                pm.counts.cancelled++;
            rsim_mb(); /* what was written before the answer is visible first */
            rsim_mbox_write(RSIM_MBOX_PM_REPLY, (uint32_t)answer);
            done |= 1;
        }
    }
    return done;
}

struct rsim_pm_counts rsim_pm_counts(void)
{
    return pm.counts;
}
