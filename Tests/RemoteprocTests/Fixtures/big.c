/* A large image for load-speed measurement: BIG_SIZE bytes of initialised, incompressible data. */
#include <stdint.h>
#ifndef BIG_SIZE
#define BIG_SIZE (200 * 1024)
#endif
#define R(i) (uint8_t)(((i) * 2654435761u) >> 13)
#define R4(i) R(i), R(i + 1), R(i + 2), R(i + 3)
#define R16(i) R4(i), R4(i + 4), R4(i + 8), R4(i + 12)
#define R64(i) R16(i), R16(i + 16), R16(i + 32), R16(i + 48)
#define R256(i) R64(i), R64(i + 64), R64(i + 128), R64(i + 192)
#define R1K(i) R256(i), R256(i + 256), R256(i + 512), R256(i + 768)
__attribute__((used)) const uint8_t blob[BIG_SIZE / 1024][1024] = { [0 ... BIG_SIZE / 1024 - 1] = { R1K(7) } };
__attribute__((used, section(".resource_table")))
const uint32_t resource_table[4] = {1, 0, 0, 0};
void _start(void) { for (;;) { } }
