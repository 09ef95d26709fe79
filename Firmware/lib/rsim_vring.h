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
    uint16_t unnotified; /* used entries published since the last notification */
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

/*
 * Sets `vr` up for the vring the host placed at `da` (read from the resource
 * table after DRIVER_OK). Checks: num a power of two in 1..32768, align a
 * power of two in 4..64 KiB, da 16-byte aligned, the whole vring inside the
 * shared window, notifyid <= 31. Starts from the ring's current used.idx (0
 * on a ring the host just zeroed). Returns 0 or a negative RSIM_VRING_ERR_*.
 */
int rsim_vring_attach(struct rsim_vring *vr, uint32_t da, uint32_t align, uint32_t num,
                      uint32_t notifyid);

/*
 * Looks at the next available buffer without taking it. `device_writes`
 * selects the expected direction (1: the host posted it for us to fill, i.e.
 * VRING_DESC_F_WRITE set; 0: the host filled it for us to read). Buffers that
 * fail a check (or are shorter than `min_len`) are returned used with length 0
 * and skipped.
 * Returns 1 and fills `buf` when a good buffer is waiting, 0 when the ring is
 * empty, RSIM_VRING_ERR_INDEX when the host's avail idx is corrupt.
 */
int rsim_vring_peek(struct rsim_vring *vr, int device_writes, uint32_t min_len,
                    struct rsim_vring_buf *buf);

/* Takes the buffer the last successful rsim_vring_peek returned. */
void rsim_vring_take(struct rsim_vring *vr);

/* Returns buffer `head` to the host with `len` bytes written and publishes
 * the new used.idx (after a barrier). Does not kick. */
void rsim_vring_put_used(struct rsim_vring *vr, uint16_t head, uint32_t len);

/* Kicks the host if buffers were returned since the last call and the host
 * did not set VRING_AVAIL_F_NO_INTERRUPT. Returns 1 if it kicked. */
int rsim_vring_notify(struct rsim_vring *vr);

/* Whether the host should kick us when it adds buffers to this ring (it does
 * after attach). Off: VRING_USED_F_NO_NOTIFY, or with EVENT_IDX an avail_event
 * a whole ring behind, and peek no longer asks for a kick when it finds the
 * ring empty. On: the request is made, then returns 1 if buffers are already
 * there (look again before sleeping: one added meanwhile was not kicked for). */
int rsim_vring_set_kicks(struct rsim_vring *vr, int on);

#endif /* RSIM_VRING_H */
