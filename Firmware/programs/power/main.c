/*
 * power — an echo service that takes part in the suspend/resume handshake. It acknowledges
 * every suspend request unless the host has asked it to hold on ("hold"; "release" ends that),
 * in which case it cancels. Every message is echoed, and every answer and resume is printed:
 *   power: request auto: ACK | power: request system: CANCEL | power: resumed <n>
 */
#include "rsim_printf.h"
#include "rsim_rpmsg.h"
#include "rsim_pm.h"

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);

/* Set by "hold": the application vetoes suspension while it is. */
volatile uint32_t power_busy;

static int equals(const void *data, uint32_t len, const char *word)
{
    const char *bytes = data;
    uint32_t i = 0;
    for (; word[i] != '\0'; i++)
        if (i >= len || bytes[i] != word[i])
            return 0;
    return i == len;
}

static void on_message(struct rsim_rpmsg_ept *ept, const void *data, uint32_t len, uint32_t src,
                       void *priv)
{
    (void)priv;
    if (equals(data, len, "hold"))
        power_busy = 1;
    else if (equals(data, len, "release"))
        power_busy = 0;
    int rc = rsim_rpmsg_send(ept, src, data, len);
    if (rc < 0)
        rsim_printf("power: reply to %u failed: %d\n", src, rc);
}

static enum rsim_pm_answer decide(enum rsim_pm_request request, void *priv)
{
    (void)priv;
    enum rsim_pm_answer answer = power_busy ? RSIM_PM_CANCEL : RSIM_PM_ACK;
    rsim_printf("power: request %s: %s\n", request == RSIM_PM_SYSTEM ? "system" : "auto",
                answer == RSIM_PM_ACK ? "ACK" : "CANCEL");
    return answer;
}

static void resumed(void *priv)
{
    (void)priv;
    rsim_printf("power: resumed %u\n", rsim_pm_counts().resumed);
}

int main(void)
{
    rsim_pm_enable(decide, resumed, 0);
    (void)rsim_rpmsg_start_service(&rsim_rsc_table.vdev, "rpmsg-echo", on_message, 0);

    rsim_printf("power: ready\n");
    for (;;)
        rsim_rpmsg_wait_and_poll();
}
