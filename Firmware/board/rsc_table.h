/*
 * rsc_table.h — remoteproc resource table wire layout (OpenAMP / Linux
 * compatible). All structures are packed and little-endian; every entry
 * starts with its 32-bit `type` word. Offsets in the comments are bytes from
 * the start of the structure.
 *
 * The structures are also 4-byte aligned (every field is naturally aligned
 * within them), so the compiler may use word accesses; the layout is the
 * same as with `packed` alone.
 *
 * A firmware's table lives in the ELF section ".resource_table", whose load
 * and run addresses must be equal. The host edits it in place before start
 * (ADDR_ANY addresses, notify ids, gfeatures) and while the core runs (the
 * vdev status byte), so read host-written fields through a volatile pointer.
 */
#ifndef RSC_TABLE_H
#define RSC_TABLE_H

#include <stdint.h>

#define RSC_PACKED __attribute__((packed, aligned(4)))

/* Entry types. */
#define RSC_CARVEOUT            0u
#define RSC_DEVMEM              1u
#define RSC_TRACE               2u
#define RSC_VDEV                3u
#define RSC_LAST                4u
#define RSC_VENDOR_START        128u
#define RSC_VENDOR_END          512u

/* "The host chooses this value" (and writes it back into the table). */
#define FW_RSC_U32_ADDR_ANY     0xFFFFFFFFu
#define FW_RSC_U64_ADDR_ANY     0xFFFFFFFFFFFFFFFFull
#define RSC_NOTIFY_ID_ANY       0xFFFFFFFFu

#define RSC_TABLE_VERSION       1u
#define RPROC_MAX_NAME_LEN      32

/* Virtio device ids, features and status bits used with RSC_VDEV. */
#define VIRTIO_ID_RPMSG             7u
#define VIRTIO_RPMSG_F_NS           (1u << 0)  /* name service announcements */
#define VIRTIO_RING_F_EVENT_IDX     (1u << 29)

#define VIRTIO_CONFIG_S_ACKNOWLEDGE 0x01u
#define VIRTIO_CONFIG_S_DRIVER      0x02u
#define VIRTIO_CONFIG_S_DRIVER_OK   0x04u
#define VIRTIO_CONFIG_S_FEATURES_OK 0x08u
#define VIRTIO_CONFIG_S_NEEDS_RESET 0x40u
#define VIRTIO_CONFIG_S_FAILED      0x80u

/* Table header: 16 + 4 * num bytes. offset[i] is measured from the start of
 * the table. A firmware normally declares its own struct that starts with
 * RSC_TABLE_HEADER(n) followed by its entries (see programs/minimal). */
struct resource_table {
    uint32_t ver;         /*  0: must be 1 */
    uint32_t num;         /*  4: number of entries */
    uint32_t reserved[2]; /*  8: must be 0 */
    uint32_t offset[];    /* 16: entry offsets */
} RSC_PACKED;

#define RSC_TABLE_HEADER(n) \
    uint32_t ver;           \
    uint32_t num;           \
    uint32_t reserved[2];   \
    uint32_t offset[n]

/* Generic entry header (type word only). */
struct fw_rsc_hdr {
    uint32_t type;
} RSC_PACKED;

/* RSC_CARVEOUT: 56 bytes. */
struct fw_rsc_carveout {
    uint32_t type;                    /*  0: RSC_CARVEOUT */
    uint32_t da;                      /*  4: device address or ADDR_ANY */
    uint32_t pa;                      /*  8: host physical address or ADDR_ANY */
    uint32_t len;                     /* 12: bytes */
    uint32_t flags;                   /* 16: protection / IOMMU flags */
    uint32_t reserved;                /* 20: must be 0 */
    char     name[RPROC_MAX_NAME_LEN];/* 24: NUL-padded */
} RSC_PACKED;

/* RSC_DEVMEM: 56 bytes, same layout as a carveout. */
struct fw_rsc_devmem {
    uint32_t type;                    /*  0: RSC_DEVMEM */
    uint32_t da;                      /*  4 */
    uint32_t pa;                      /*  8 */
    uint32_t len;                     /* 12 */
    uint32_t flags;                   /* 16 */
    uint32_t reserved;                /* 20: must be 0 */
    char     name[RPROC_MAX_NAME_LEN];/* 24 */
} RSC_PACKED;

/* RSC_TRACE: 48 bytes. */
struct fw_rsc_trace {
    uint32_t type;                    /*  0: RSC_TRACE */
    uint32_t da;                      /*  4: trace buffer device address */
    uint32_t len;                     /*  8: buffer length */
    uint32_t reserved;                /* 12: 0 */
    char     name[RPROC_MAX_NAME_LEN];/* 16 */
} RSC_PACKED;

/* One vring inside an RSC_VDEV entry: 20 bytes. */
struct fw_rsc_vdev_vring {
    uint32_t da;        /*  0: vring device address or ADDR_ANY */
    uint32_t align;     /*  4: alignment of the used ring */
    uint32_t num;       /*  8: descriptor count, a power of two */
    uint32_t notifyid;  /* 12: notify id of this vring or NOTIFY_ID_ANY */
    uint32_t reserved;  /* 16: 0 */
} RSC_PACKED;

/* RSC_VDEV: 28 bytes, followed by num_of_vrings fw_rsc_vdev_vring entries
 * (at offset 28 + 20 * k) and then config_len bytes of config space. */
struct fw_rsc_vdev {
    uint32_t type;          /*  0: RSC_VDEV */
    uint32_t id;            /*  4: virtio device id */
    uint32_t notifyid;      /*  8: notify id of the vdev or NOTIFY_ID_ANY */
    uint32_t dfeatures;     /* 12: features offered by the firmware */
    uint32_t gfeatures;     /* 16: features accepted, written by the host */
    uint32_t config_len;    /* 20: config space length */
    uint8_t  status;        /* 24: virtio status, written by the host */
    uint8_t  num_of_vrings; /* 25 */
    uint8_t  reserved[2];   /* 26: 0 */
} RSC_PACKED;

/* Vring k of a vdev entry. */
static inline struct fw_rsc_vdev_vring *
fw_rsc_vdev_vring_at(struct fw_rsc_vdev *vdev, unsigned k)
{
    return (struct fw_rsc_vdev_vring *)((uint8_t *)vdev + sizeof(*vdev) +
                                        k * sizeof(struct fw_rsc_vdev_vring));
}

/* Config space of a vdev entry (after its vrings). */
static inline void *fw_rsc_vdev_config(struct fw_rsc_vdev *vdev)
{
    return (uint8_t *)vdev + sizeof(*vdev) +
           vdev->num_of_vrings * sizeof(struct fw_rsc_vdev_vring);
}

/* Wire-size checks. */
_Static_assert(sizeof(struct resource_table) == 16, "resource_table header is 16 bytes");
_Static_assert(sizeof(struct fw_rsc_carveout) == 56, "fw_rsc_carveout is 56 bytes");
_Static_assert(sizeof(struct fw_rsc_devmem) == 56, "fw_rsc_devmem is 56 bytes");
_Static_assert(sizeof(struct fw_rsc_trace) == 48, "fw_rsc_trace is 48 bytes");
_Static_assert(sizeof(struct fw_rsc_vdev) == 28, "fw_rsc_vdev is 28 bytes");
_Static_assert(sizeof(struct fw_rsc_vdev_vring) == 20, "fw_rsc_vdev_vring is 20 bytes");
_Static_assert(__builtin_offsetof(struct fw_rsc_carveout, name) == 24, "carveout name at 24");
_Static_assert(__builtin_offsetof(struct fw_rsc_trace, name) == 16, "trace name at 16");
_Static_assert(__builtin_offsetof(struct fw_rsc_vdev, status) == 24, "vdev status at 24");
_Static_assert(__builtin_offsetof(struct fw_rsc_vdev_vring, notifyid) == 12, "vring notifyid at 12");

#endif /* RSC_TABLE_H */
