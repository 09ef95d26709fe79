/*
 * hostile-text — text a terminal would obey instead of show, sent everywhere text goes: console
 * lines, the trace buffer and a service name. A host tool must show it, escaped, and never pass
 * it through. Then echoes on that service like echo does.
 *
 *   ESC ] 0;owned BEL   retitles a terminal (OSC 0)
 *   ESC [ 2 J           clears it (CSI 2J)
 *   U+009B              a one-byte CSI on some terminals (C1 control, UTF-8 c2 9b)
 *   U+202E              right-to-left override (UTF-8 e2 80 ae)
 */
#include "rsim_printf.h"
#include "rsim_rpmsg.h"

RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);

static void on_message(struct rsim_rpmsg_ept *ept, const void *data, uint32_t len, uint32_t src,
                       void *priv)
{
    (void)priv;
    rsim_rpmsg_send(ept, src, data, len);
}

int main(void)
{
    rsim_trace_attach(rsim_trace_buf, RSIM_TRACE_BUF_LEN);

    (void)rsim_rpmsg_start_service(&rsim_rsc_table.vdev, "evil\x1b]0;owned\x07\x1b[2J", on_message, 0);

    rsim_printf("title \x1b]0;owned\x07 clear \x1b[2J c1 \xc2\x9b" "31m bidi \xe2\x80\xae" "dne\n");
    rsim_trace_printf("trace \x1b]0;owned\x07 \x1b[2J\n");
    rsim_printf("hostile-text: ready\n");

    for (;;)
        rsim_rpmsg_wait_and_poll();
}
