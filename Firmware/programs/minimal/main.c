/*
 * minimal — the smallest useful rsim firmware.
 *
 * It carries a full resource table (a carveout, an RPMsg vdev with two
 * vrings, a trace buffer), greets on the console and in the trace buffer,
 * checks that the C runtime set up .data and .bss, then answers every host
 * kick with a kick on notify id 0.
 */
#include <stddef.h>
#include <stdint.h>

#include "rsc_table.h"
#include "rsim.h"

#if defined(__arm__) || defined(__thumb__)
#define ARCH_NAME "cortex-m4"
#elif defined(__riscv)
#define ARCH_NAME "rv32"
#else
#error "unsupported architecture"
#endif

#define TRACE_BUF_LEN 2048u
#define NUM_VRINGS    2
#define VRING_ALIGN   16u
#define VRING_NUM     16u

/* Trace buffer: NUL-terminated ring in sram, read by the host. */
char rsim_trace_buf[TRACE_BUF_LEN];

enum { RSC_ENTRY_CARVEOUT, RSC_ENTRY_VDEV, RSC_ENTRY_TRACE, RSC_NUM_ENTRIES };

struct minimal_resource_table {
    RSC_TABLE_HEADER(RSC_NUM_ENTRIES);
    struct fw_rsc_carveout carveout;
    struct fw_rsc_vdev vdev;
    struct fw_rsc_vdev_vring vring[NUM_VRINGS];
    struct fw_rsc_trace trace;
};

_Static_assert(offsetof(struct minimal_resource_table, carveout) == 28, "carveout at 28");
_Static_assert(offsetof(struct minimal_resource_table, vdev) == 84, "vdev at 84");
_Static_assert(offsetof(struct minimal_resource_table, vring) == 112, "vrings at 112");
_Static_assert(offsetof(struct minimal_resource_table, trace) == 152, "trace at 152");
_Static_assert(sizeof(struct minimal_resource_table) == 200, "table is 200 bytes");

__attribute__((used, section(".resource_table"), aligned(8)))
struct minimal_resource_table rsc_table = {
    .ver = RSC_TABLE_VERSION,
    .num = RSC_NUM_ENTRIES,
    .reserved = { 0, 0 },
    .offset = {
        [RSC_ENTRY_CARVEOUT] = offsetof(struct minimal_resource_table, carveout),
        [RSC_ENTRY_VDEV]     = offsetof(struct minimal_resource_table, vdev),
        [RSC_ENTRY_TRACE]    = offsetof(struct minimal_resource_table, trace),
    },
    .carveout = {
        .type = RSC_CARVEOUT,
        .da = FW_RSC_U32_ADDR_ANY,
        .pa = FW_RSC_U32_ADDR_ANY,
        .len = 0x8000,
        .flags = 0,
        .reserved = 0,
        .name = "rsim-carveout",
    },
    .vdev = {
        .type = RSC_VDEV,
        .id = VIRTIO_ID_RPMSG,
        .notifyid = RSC_NOTIFY_ID_ANY,
        .dfeatures = VIRTIO_RPMSG_F_NS | VIRTIO_RING_F_EVENT_IDX,
        .gfeatures = 0,
        .config_len = 0,
        .status = 0,
        .num_of_vrings = NUM_VRINGS,
        .reserved = { 0, 0 },
    },
    .vring = {
        { .da = FW_RSC_U32_ADDR_ANY, .align = VRING_ALIGN, .num = VRING_NUM,
          .notifyid = RSC_NOTIFY_ID_ANY, .reserved = 0 },
        { .da = FW_RSC_U32_ADDR_ANY, .align = VRING_ALIGN, .num = VRING_NUM,
          .notifyid = RSC_NOTIFY_ID_ANY, .reserved = 0 },
    },
    .trace = {
        .type = RSC_TRACE,
        .da = (uint32_t)(uintptr_t)rsim_trace_buf, /* link-time constant */
        .len = TRACE_BUF_LEN,
        .reserved = 0,
        .name = "rsim-trace",
    },
};

/* Initialised global: lives in .data (run address in sram, image in code). */
volatile uint32_t minimal_boot_magic = 0xB007C0DEu;

/* Zeroed global: lives in .bss. Counts host kicks per notify id. */
volatile uint32_t minimal_kicks[32];

static uint32_t trace_pos;

static void trace_putc(char c)
{
    rsim_trace_buf[trace_pos] = c;
    trace_pos = (trace_pos + 1u) % (TRACE_BUF_LEN - 1u); /* keep the last byte NUL */
    rsim_trace_buf[trace_pos] = '\0';
}

static void say(const char *s)
{
    rsim_console_puts(s);
    for (; *s != '\0'; s++)
        trace_putc(*s);
}

int main(void)
{
    /* The C runtime must have copied .data and zeroed .bss. */
    if (minimal_boot_magic != 0xB007C0DEu)
        rsim_panic(1);
    for (unsigned i = 0; i < 32; i++) {
        if (minimal_kicks[i] != 0)
            rsim_panic(2);
    }

    say("minimal: hello from " ARCH_NAME "\n");

    for (;;) {
        uint32_t pending = rsim_wait();
        if (pending == 0)
            continue; /* stop or sleep deadline */
        rsim_ack(pending);
        for (unsigned id = 0; id < 32; id++) {
            if (pending & (1u << id))
                minimal_kicks[id]++;
        }
        rsim_kick(0);
    }
}
