/* A 64-bit fixture: a resource table with a vdev and a trace buffer, data and bss. */
#include <stdint.h>

struct table {
    uint32_t ver, num, reserved[2], offset[2];
    struct { uint32_t type, id, notifyid, dfeatures, gfeatures, config_len; uint8_t status, num_of_vrings, reserved[2];
             struct { uint32_t da, align, num, notifyid, reserved; } vring[2]; } vdev;
    struct { uint32_t type, da, len, reserved; char name[32]; } trace;
} __attribute__((packed));

char trace_buffer[512];
uint64_t counters[64];                       /* bss */
uint64_t seed = 0x0123456789abcdefULL;       /* data */
const char banner[] = "elf64 fixture";

__attribute__((used, section(".resource_table")))
struct table resource_table = {
    1, 2, {0, 0}, {24, 24 + 68},
    {3, 7, 0xFFFFFFFF, 1, 0, 0, 0, 2, {0, 0},
     {{0xFFFFFFFF, 4096, 16, 0xFFFFFFFF, 0}, {0xFFFFFFFF, 4096, 16, 0xFFFFFFFF, 0}}},
    {2, 0, sizeof trace_buffer, 0, "elf64-trace"},
};

__attribute__((section(".text.start"), used)) void _start(void) {
    resource_table.trace.da = (uint32_t)(uintptr_t)trace_buffer;
    for (int i = 0; i < 64; i++) counters[i] += seed + (uint64_t)banner[i % 13];
    for (;;) { }
}
