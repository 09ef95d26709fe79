/*
 * postmortem — a firmware that dies on request, each way a core dump must
 * capture, with a call chain and locals worth looking at in the dump.
 * Serves "rpmsg-postmortem"; a message names the death:
 *
 *   "fault"    sum_readings() walks a sensor list whose third node points to
 *              0xDEADBEE0, an address no memory covers: a bus fault / load
 *              access fault inside sum_readings (locals: node, total, index)
 *   "panic"    check_readings() finds the total out of range and writes
 *              PANIC 0x5EB5 (its locals: total, limit)
 *   "hang"     arms the watchdog for 50 ms and spins in wait_forever()
 *              without kicking it: a watchdog crash
 *   anything else is echoed.
 * Prints "postmortem: ready" once the service is announced.
 */
#include "rsim_printf.h"
#include "rsim_rpmsg.h"

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);

#define POSTMORTEM_PANIC 0x5EB5u

struct reading {
    struct reading *next;
    uint32_t value;
};

static struct reading readings[3];
static volatile uint32_t spins;

/* Adds up the readings; the list's last link is corrupt. */
__attribute__((noinline)) static uint32_t sum_readings(struct reading *node, uint32_t limit)
{
    uint32_t total = 0;
    uint32_t index = 0;
    while (node && index < limit) {
        total += node->value;
        node = node->next;
        index++;
        __asm__ volatile("" : "+r"(total), "+r"(index), "+r"(node));
    }
    return total;
}

__attribute__((noinline)) static void check_readings(uint32_t total)
{
    uint32_t limit = 100u;
    __asm__ volatile("" : "+r"(limit));
    if (total > limit) {
        rsim_printf("postmortem: total %u over %u\n", total, limit);
        rsim_panic(POSTMORTEM_PANIC);
    }
}

__attribute__((noinline)) static void wait_forever(void)
{
    rsim_watchdog(50u);
    for (;;)
        spins++;
}

static void on_message(struct rsim_rpmsg_ept *ept, const void *data, uint32_t len, uint32_t src, void *priv)
{
    (void)priv;
    const char *text = data;
    if (len == 5 && text[0] == 'f' && text[1] == 'a' && text[2] == 'u' && text[3] == 'l' && text[4] == 't') {
        readings[0].value = 7u;
        readings[0].next = &readings[1];
        readings[1].value = 11u;
        readings[1].next = &readings[2];
        readings[2].value = 13u;
        readings[2].next = (struct reading *)(uintptr_t)0xDEADBEE0u;
        rsim_printf("postmortem: summing\n");
        rsim_printf("postmortem: sum %u\n", sum_readings(&readings[0], 10u));
    } else if (len == 5 && text[0] == 'p' && text[1] == 'a' && text[2] == 'n' && text[3] == 'i' && text[4] == 'c') {
        check_readings(12345u);
    } else if (len == 4 && text[0] == 'h' && text[1] == 'a' && text[2] == 'n' && text[3] == 'g') {
        rsim_printf("postmortem: hanging\n");
        wait_forever();
    } else {
        (void)rsim_rpmsg_send(ept, src, data, len);
    }
}

int main(void)
{
    rsim_trace_attach(rsim_trace_buf, RSIM_TRACE_BUF_LEN);
    (void)rsim_rpmsg_start_service(&rsim_rsc_table.vdev, "rpmsg-postmortem", on_message, 0);
    rsim_printf("postmortem: ready\n");
    for (;;)
        rsim_rpmsg_wait_and_poll();
}
