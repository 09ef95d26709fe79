/*
 * rsim_vring.c — device (remote) side of a split virtqueue: attach here; the
 * per-buffer operations are inline in rsim_vring.h.
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

static inline int is_pow2(uint32_t x)
{
    return x != 0 && (x & (x - 1u)) == 0;
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
    if (!rsim_vring_in_shared_window(da, rsim_vring_size(num, align)))
        return RSIM_VRING_ERR_PARAM;
    if (notifyid > RSIM_NOTIFY_ID_MAX)
        return RSIM_VRING_ERR_PARAM;

    vr->desc = da;
    vr->avail = da + 16u * num;
    vr->used = da + rsim_vring_used_offset(num, align);
    vr->notifyid = notifyid;
    vr->num = (uint16_t)num; /* 32768 fits; the mask below is num - 1 */
    vr->dropped = 0;
    vr->event_idx = 0;
    vr->quiet = 0;
    /* Everything before the used idx was handled by an earlier device (none
     * on a ring the host has just zeroed, where this reads 0). */
    rsim_mb();
    vr->used_idx = rsim_vring_rd16(vr->used + 2u);
    vr->last_avail = vr->used_idx;
    vr->notified_idx = vr->used_idx;
    return 0;
}





