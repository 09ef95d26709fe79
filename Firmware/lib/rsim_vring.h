/*
 * rsim_vring.h — the device (remote) side of a split virtqueue.
 *
 * The host (virtio driver) lays out and zeroes the vring in the shared window
 * and owns every buffer. The device
 *   - takes buffers from the avail ring (head indices of descriptors the
 *     driver published),
 *   - returns them on the used ring ({head, bytes written}), and
 *   - kicks the vring's notify id, unless the driver set NO_INTERRUPT.
 *
 * Layout of a vring of `num` descriptors at device address `da`
 * (virtio 1.x split virtqueue, little-endian):
 *
 *   da + 0                     desc[num]   16 B each: u64 addr, u32 len, u16 flags, u16 next
 *   da + 16*num                avail       u16 flags, u16 idx, u16 ring[num], u16 used_event
 *   da + used_off              used        u16 flags, u16 idx, {u32 id, u32 len}[num], u16 avail_event
 *   used_off = align_up(16*num + 6 + 2*num, align)
 *
 * Everything the driver wrote is checked before use: a head index must be
 * below num, a buffer must lie inside the shared window, with the expected
 * direction and no INDIRECT flag. A bad buffer is returned at once with length
 * 0 and skipped. Only the head descriptor of a chain is used (RPMsg buffers
 * are single descriptors).
 *
 * Not thread-safe (there is one core and no interrupts); not re-entrant.
 */
#ifndef RSIM_VRING_H
#define RSIM_VRING_H

#include <stdint.h>

#include "rsim.h"

/* Descriptor flags. */
#define VRING_DESC_F_NEXT           1u
#define VRING_DESC_F_WRITE          2u /* the device writes this buffer */
#define VRING_DESC_F_INDIRECT       4u /* not supported: such buffers are dropped */

/* avail.flags (driver → device) and used.flags (device → driver). */
#define VRING_AVAIL_F_NO_INTERRUPT  1u /* driver: do not kick me for used buffers */
#define VRING_USED_F_NO_NOTIFY      1u /* device: do not kick me for new buffers */

#define RSIM_VRING_NUM_MAX          32768u
#define RSIM_VRING_DESC_SIZE        16u

/* Errors (same numbers as OpenAMP's virtqueue layer). */
#define RSIM_VRING_ERR_INDEX        (-3002) /* avail idx moved more than num past us */
#define RSIM_VRING_ERR_ALIGN        (-3006) /* bad da / align */
#define RSIM_VRING_ERR_PARAM        (-3008) /* bad num / notify id / placement */

/* One device-side vring. All addresses are device addresses. */
struct rsim_vring {
    uint32_t desc;       /* descriptor table */
    uint32_t avail;      /* avail ring (written by the host) */
    uint32_t used;       /* used ring (written by us) */
    uint32_t notifyid;   /* kick this id (0..31) to notify the host */
    uint16_t num;        /* descriptors, a power of two */
    uint16_t last_avail; /* free-running index of the next avail entry to take */
    uint16_t used_idx;   /* free-running copy of used.idx */
    uint16_t notified_idx; /* used_idx at the last notification: the entries after it are unnotified
                            (kept as an index, so publishing an entry stores nothing more) */
    uint32_t dropped;    /* bad buffers returned with length 0 */
    uint8_t event_idx;   /* VIRTIO_RING_F_EVENT_IDX negotiated: used_event/avail_event, not flags */
    uint8_t quiet;       /* we asked the host not to kick for new buffers (rsim_vring_set_kicks) */
};

/* A buffer taken (or peeked) from the avail ring. */
struct rsim_vring_buf {
    uint8_t *data;  /* the buffer (device address == CPU address on this core) */
    uint32_t len;   /* descriptor length */
    uint16_t head;  /* descriptor index, to return it with rsim_vring_put_used */
};

/* Offset of the used ring from the start of the vring. */
static inline uint32_t rsim_vring_used_offset(uint32_t num, uint32_t align)
{
    return (16u * num + 6u + 2u * num + align - 1u) & ~(align - 1u);
}

/* Total bytes of a vring: used_offset + 6 + 8 * num. */
static inline uint32_t rsim_vring_size(uint32_t num, uint32_t align)
{
    return rsim_vring_used_offset(num, align) + 6u + 8u * num;
}

/* Volatile accessors for shared memory at a device address (the hot ring
 * operations below are inline: under emulation every call's register saves
 * are stores, and stores are what costs, see docs/performance.md). */
static inline uint16_t rsim_vring_rd16(uint32_t addr)
{
    return *(volatile const uint16_t *)(uintptr_t)addr;
}

static inline uint32_t rsim_vring_rd32(uint32_t addr)
{
    return *(volatile const uint32_t *)(uintptr_t)addr;
}

static inline void rsim_vring_wr16(uint32_t addr, uint16_t v)
{
    *(volatile uint16_t *)(uintptr_t)addr = v;
}

static inline void rsim_vring_wr32(uint32_t addr, uint32_t v)
{
    *(volatile uint32_t *)(uintptr_t)addr = v;
}

/* The host's avail.idx, and how many entries it has added that we have not
 * taken yet (more than num means a corrupt index; peek refuses it). */
static inline uint16_t rsim_vring_avail_idx(const struct rsim_vring *vr)
{
    return rsim_vring_rd16(vr->avail + 2u);
}

static inline uint16_t rsim_vring_waiting(const struct rsim_vring *vr)
{
    return (uint16_t)(rsim_vring_avail_idx(vr) - vr->last_avail);
}

/* True when [addr, addr + len) lies inside the shared window (no overflow). */
static inline int rsim_vring_in_shared_window(uint32_t addr, uint32_t len)
{
    if (addr < RSIM_SHARED_BASE)
        return 0;
    uint32_t off = addr - RSIM_SHARED_BASE;
    return off < RSIM_SHARED_SIZE && len <= RSIM_SHARED_SIZE - off;
}

/*
 * Sets `vr` up for the vring the host placed at `da` (read from the resource
 * table after DRIVER_OK). Checks: num a power of two in 1..32768, align a
 * power of two in 4..64 KiB, da 16-byte aligned, the whole vring inside the
 * shared window, notifyid <= 31. Starts from the ring's current used.idx (0
 * on a ring the host just zeroed). Returns 0 or a negative RSIM_VRING_ERR_*.
 */
int rsim_vring_attach(struct rsim_vring *vr, uint32_t da, uint32_t align, uint32_t num,
                      uint32_t notifyid);

/* Returns buffer `head` to the host with `len` bytes written and publishes
 * the new used.idx (after a barrier). Does not kick. */
static inline void rsim_vring_put_used(struct rsim_vring *vr, uint16_t head, uint32_t len)
{
    uint32_t slot = vr->used_idx & (uint32_t)(vr->num - 1u);
    uint32_t elem = vr->used + 4u + 8u * slot;
    rsim_vring_wr32(elem, head);
    rsim_vring_wr32(elem + 4u, len);
    rsim_mb(); /* release: element (and buffer contents) before the index */
    vr->used_idx++;
    rsim_vring_wr16(vr->used + 2u, vr->used_idx);
}

/*
 * Looks at the next available buffer without taking it. `device_writes`
 * selects the expected direction (1: the host posted it for us to fill, i.e.
 * VRING_DESC_F_WRITE set; 0: the host filled it for us to read). Buffers that
 * fail a check (or are shorter than `min_len`) are returned used with length 0
 * and skipped.
 * Returns 1 and fills `buf` when a good buffer is waiting, 0 when the ring is
 * empty, RSIM_VRING_ERR_INDEX when the host's avail idx is corrupt.
 * Always inlined: as a call it saved nine registers and wrote `buf` through
 * memory on every message — stores, which Unicorn 2.0.1 makes slow
 * (docs/performance.md).
 */
__attribute__((always_inline)) static inline int rsim_vring_peek(struct rsim_vring *vr, int device_writes, uint32_t min_len,
                                  struct rsim_vring_buf *buf)
{
    uint32_t mask = (uint32_t)vr->num - 1u;

    for (;;) {
        uint16_t avail_idx = rsim_vring_avail_idx(vr);
        if (avail_idx == vr->last_avail) {
            if (!vr->event_idx || vr->quiet)
                return 0;
            /* Ask for a kick at the next buffer (avail_event), then look
             * again: one published before the request was seen cannot be
             * missed. */
            rsim_vring_wr16(vr->used + 4u + 8u * vr->num, vr->last_avail);
            rsim_mb();
            if (rsim_vring_waiting(vr) == 0)
                return 0;
            continue;
        }
        /* More than num new entries cannot be: the host's index is corrupt.
         * Leave the ring alone. */
        if ((uint16_t)(avail_idx - vr->last_avail) > vr->num)
            return RSIM_VRING_ERR_INDEX;
        rsim_mb(); /* acquire: the index before the entry and descriptor */

        uint16_t head = rsim_vring_rd16(vr->avail + 4u + 2u * (vr->last_avail & mask));
        if (head < vr->num) {
            uint32_t d = vr->desc + RSIM_VRING_DESC_SIZE * head;
            uint32_t addr_lo = rsim_vring_rd32(d);
            uint32_t addr_hi = rsim_vring_rd32(d + 4u);
            uint32_t len = rsim_vring_rd32(d + 8u);
            uint16_t flags = rsim_vring_rd16(d + 12u);
            int writes = (flags & VRING_DESC_F_WRITE) != 0;

            if (addr_hi == 0 && (flags & VRING_DESC_F_INDIRECT) == 0 &&
                writes == (device_writes != 0) && len >= min_len &&
                rsim_vring_in_shared_window(addr_lo, len)) {
                buf->data = (uint8_t *)(uintptr_t)addr_lo;
                buf->len = len;
                buf->head = head;
                return 1;
            }
        }
        /* Bad entry: give it back empty and look at the next one. */
        vr->last_avail++;
        vr->dropped++;
        rsim_vring_put_used(vr, head, 0);
    }
}

/* Takes the buffer the last successful rsim_vring_peek returned. */
static inline void rsim_vring_take(struct rsim_vring *vr)
{
    vr->last_avail++;
}

/* Kicks the host if buffers were returned since the last call and the host
 * did not set VRING_AVAIL_F_NO_INTERRUPT. Returns 1 if it kicked. */
static inline int rsim_vring_notify(struct rsim_vring *vr)
{
    if (vr->notified_idx == vr->used_idx)
        return 0;
    uint16_t old = vr->notified_idx;
    vr->notified_idx = vr->used_idx;
    rsim_mb(); /* our used.idx store before reading the host's flags / used_event */
    if (vr->event_idx) {
        /* Kick only when used.idx moved past the host's used_event:
         * (new - event - 1) mod 2^16 < (new - old) mod 2^16. */
        uint16_t event = rsim_vring_rd16(vr->avail + 4u + 2u * vr->num);
        if ((uint16_t)(vr->used_idx - event - 1u) >= (uint16_t)(vr->used_idx - old))
            return 0;
    } else if (rsim_vring_rd16(vr->avail) & VRING_AVAIL_F_NO_INTERRUPT) {
        return 0;
    }
    rsim_kick(vr->notifyid);
    return 1;
}

/* Whether the host should kick us when it adds buffers to this ring (it does
 * after attach). Off: VRING_USED_F_NO_NOTIFY, or with EVENT_IDX an avail_event
 * a whole ring behind, and peek no longer asks for a kick when it finds the
 * ring empty. On: the request is made, then returns 1 if buffers are already
 * there (look again before sleeping: one added meanwhile was not kicked for). */
static inline int rsim_vring_set_kicks(struct rsim_vring *vr, int on)
{
    vr->quiet = !on;
    if (vr->event_idx) {
        /* A whole ring behind: the host's (new - event - 1) never falls inside
         * the entries it adds between two looks of ours. */
        rsim_vring_wr16(vr->used + 4u + 8u * vr->num,
             on ? vr->last_avail : (uint16_t)(vr->last_avail - vr->num - 1u));
    } else {
        rsim_vring_wr16(vr->used, on ? 0u : VRING_USED_F_NO_NOTIFY);
    }
    if (!on)
        return 0;
    rsim_mb(); /* the request before the look at avail.idx */
    return rsim_vring_waiting(vr) != 0;
}

#endif /* RSIM_VRING_H */
