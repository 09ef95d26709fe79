/*
 * rsim_vring.c — device (remote) side of a split virtqueue. See rsim_vring.h.
 *
 * Every field the host writes (avail idx and ring, descriptors) is read with
 * a volatile access; every field we publish (used ring, used idx) is written
 * with one. Ordering:
 *   - after reading avail.idx, a barrier before reading the ring entry and the
 *     descriptor it names (acquire);
 *   - after writing a used element (and, for TX, the buffer contents), a
 *     barrier before publishing used.idx (release);
 *   - after publishing used.idx, a barrier before reading avail.flags (or, with
 *     EVENT_IDX, used_event) to decide whether to kick (so the host cannot miss
 *     both the index and the kick);
 *   - with EVENT_IDX, after writing avail_event (asking the host to kick at its
 *     next buffer), a barrier before reading avail.idx again (so a buffer
 *     published meanwhile is seen, or kicked for).
 * rsim_mb() is a full barrier (dmb / fence rw,rw), which covers all three.
 *
 * Descriptor addr is a 64-bit field; it is read as two aligned 32-bit words
 * (the descriptor table is 16-byte aligned), never as one 64-bit access.
 */
#include "rsim_vring.h"

#include "rsim.h"

/* Volatile accessors for shared memory at a device address. */
static inline uint16_t rd16(uint32_t addr)
{
    return *(volatile const uint16_t *)(uintptr_t)addr;
}

static inline uint32_t rd32(uint32_t addr)
{
    return *(volatile const uint32_t *)(uintptr_t)addr;
}

static inline void wr16(uint32_t addr, uint16_t v)
{
    *(volatile uint16_t *)(uintptr_t)addr = v;
}

static inline void wr32(uint32_t addr, uint32_t v)
{
    *(volatile uint32_t *)(uintptr_t)addr = v;
}

static inline int is_pow2(uint32_t x)
{
    return x != 0 && (x & (x - 1u)) == 0;
}

/* True when [addr, addr + len) lies inside the shared window (no overflow). */
static int in_shared_window(uint32_t addr, uint32_t len)
{
    if (addr < RSIM_SHARED_BASE)
        return 0;
    uint32_t off = addr - RSIM_SHARED_BASE;
    return off < RSIM_SHARED_SIZE && len <= RSIM_SHARED_SIZE - off;
}

int rsim_vring_attach(struct rsim_vring *vr, uint32_t da, uint32_t align, uint32_t num,
                      uint32_t notifyid)
{
    if (!is_pow2(num) || num > RSIM_VRING_NUM_MAX)
        return RSIM_VRING_ERR_PARAM;
    /* The used ring holds u32 fields: it needs at least 4-byte alignment. */
    if (!is_pow2(align) || align < 4u || align > 0x10000u)
        return RSIM_VRING_ERR_ALIGN;
    /* The descriptor table is 16-byte aligned (virtio); this also keeps the
     * two 32-bit halves of every descriptor addr aligned. */
    if ((da & 15u) != 0)
        return RSIM_VRING_ERR_ALIGN;
    if (!in_shared_window(da, rsim_vring_size(num, align)))
        return RSIM_VRING_ERR_PARAM;
    if (notifyid > RSIM_NOTIFY_ID_MAX)
        return RSIM_VRING_ERR_PARAM;

    vr->desc = da;
    vr->avail = da + 16u * num;
    vr->used = da + rsim_vring_used_offset(num, align);
    vr->notifyid = notifyid;
    vr->num = (uint16_t)num; /* 32768 fits; the mask below is num - 1 */
    vr->dropped = 0;
    vr->unnotified = 0;
    vr->event_idx = 0;
    vr->quiet = 0;
    /* Everything before the used idx was handled by an earlier device (none
     * on a ring the host has just zeroed, where this reads 0). */
    rsim_mb();
    vr->used_idx = rd16(vr->used + 2u);
    vr->last_avail = vr->used_idx;
    return 0;
}

void rsim_vring_put_used(struct rsim_vring *vr, uint16_t head, uint32_t len)
{
    uint32_t slot = vr->used_idx & (uint32_t)(vr->num - 1u);
    uint32_t elem = vr->used + 4u + 8u * slot;
    wr32(elem, head);
    wr32(elem + 4u, len);
    rsim_mb(); /* release: element (and buffer contents) before the index */
    vr->used_idx++;
    wr16(vr->used + 2u, vr->used_idx);
    vr->unnotified++;
}

int rsim_vring_peek(struct rsim_vring *vr, int device_writes, uint32_t min_len,
                    struct rsim_vring_buf *buf)
{
    uint32_t mask = (uint32_t)vr->num - 1u;

    for (;;) {
        uint16_t avail_idx = rd16(vr->avail + 2u);
        if (avail_idx == vr->last_avail) {
            if (!vr->event_idx || vr->quiet)
                return 0;
            /* Ask for a kick at the next buffer (avail_event), then look
             * again: one published before the request was seen cannot be
             * missed. */
            wr16(vr->used + 4u + 8u * vr->num, vr->last_avail);
            rsim_mb();
            if (rd16(vr->avail + 2u) == vr->last_avail)
                return 0;
            continue;
        }
        /* More than num new entries cannot be: the host's index is corrupt.
         * Leave the ring alone. */
        if ((uint16_t)(avail_idx - vr->last_avail) > vr->num)
            return RSIM_VRING_ERR_INDEX;
        rsim_mb(); /* acquire: the index before the entry and descriptor */

        uint16_t head = rd16(vr->avail + 4u + 2u * (vr->last_avail & mask));
        if (head < vr->num) {
            uint32_t d = vr->desc + RSIM_VRING_DESC_SIZE * head;
            uint32_t addr_lo = rd32(d);
            uint32_t addr_hi = rd32(d + 4u);
            uint32_t len = rd32(d + 8u);
            uint16_t flags = rd16(d + 12u);
            int writes = (flags & VRING_DESC_F_WRITE) != 0;

            if (addr_hi == 0 && (flags & VRING_DESC_F_INDIRECT) == 0 &&
                writes == (device_writes != 0) && len >= min_len &&
                in_shared_window(addr_lo, len)) {
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

void rsim_vring_take(struct rsim_vring *vr)
{
    vr->last_avail++;
}

int rsim_vring_notify(struct rsim_vring *vr)
{
    if (vr->unnotified == 0)
        return 0;
    uint16_t old = (uint16_t)(vr->used_idx - vr->unnotified);
    vr->unnotified = 0;
    rsim_mb(); /* our used.idx store before reading the host's flags / used_event */
    if (vr->event_idx) {
        /* Kick only when used.idx moved past the host's used_event:
         * (new - event - 1) mod 2^16 < (new - old) mod 2^16. */
        uint16_t event = rd16(vr->avail + 4u + 2u * vr->num);
        if ((uint16_t)(vr->used_idx - event - 1u) >= (uint16_t)(vr->used_idx - old))
            return 0;
    } else if (rd16(vr->avail) & VRING_AVAIL_F_NO_INTERRUPT) {
        return 0;
    }
    rsim_kick(vr->notifyid);
    return 1;
}

int rsim_vring_set_kicks(struct rsim_vring *vr, int on)
{
    vr->quiet = !on;
    if (vr->event_idx) {
        /* A whole ring behind: the host's (new - event - 1) never falls inside
         * the entries it adds between two looks of ours. */
        wr16(vr->used + 4u + 8u * vr->num,
             on ? vr->last_avail : (uint16_t)(vr->last_avail - vr->num - 1u));
    } else {
        wr16(vr->used, on ? 0u : VRING_USED_F_NO_NOTIFY);
    }
    if (!on)
        return 0;
    rsim_mb(); /* the request before the look at avail.idx */
    return rd16(vr->avail + 2u) != vr->last_avail;
}
