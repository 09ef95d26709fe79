#ifndef CUNICORN_SHIM_H
#define CUNICORN_SHIM_H
// Debian's libunicorn-dev (2.0.1). Only Sources/RemoteSim/UnicornEngine.swift imports this module.
#include <unicorn/unicorn.h>

// Swift cannot call C variadic functions (uc_ctl, uc_hook_add) nor expand function-like
// macros (uc_ctl_set_cpu_model): these wrappers give them fixed signatures.
static inline uc_err swuc_ctl_set_cpu_model(uc_engine *uc, int model) { return uc_ctl_set_cpu_model(uc, model); }
static inline uc_err swuc_ctl_get_cpu_model(uc_engine *uc, int *model) { return uc_ctl_get_cpu_model(uc, model); }
static inline uc_err swuc_ctl_flush_tb(uc_engine *uc) { return uc_ctl_flush_tlb(uc); }
static inline uc_err swuc_ctl_remove_cache(uc_engine *uc, uint64_t begin, uint64_t end) { return uc_ctl_remove_cache(uc, begin, end); }
static inline uc_err swuc_hook_add(uc_engine *uc, uc_hook *hh, int type, void *callback,
                                   void *user_data, uint64_t begin, uint64_t end) {
    return uc_hook_add(uc, hh, type, callback, user_data, begin, end);
}

// The stop gate's safe point (see EngineStopGate): a block hook in C, run before every
// translation block, so it must cost next to nothing. It ends the run before the block when a
// stop is requested, or when an interrupt is pending that the CPU's own mask registers
// (which the firmware changes without the board seeing it) no longer hold back.
struct swuc_attention {
    unsigned char stop;      // a stop is requested (set by any thread)
    unsigned char stopped;   // the hook ended the run for a request or an interrupt
    unsigned char pad[2];
    uint32_t pending;        // RV32 mip bits raised by the board's devices (MSIP 3, MTIP 7, MEIP 11)
};

// Whether RV32's mask registers (mstatus.MIE, mie) let a raised interrupt in. Only the RV32
// model raises pending bits (the Cortex-M4 exception model is not there yet).
static inline int swuc_interrupt_unmasked(uc_engine *uc, uint32_t pending) {
    uint64_t mstatus = 0, mie = 0;
    uc_reg_read(uc, UC_RISCV_REG_MSTATUS, &mstatus);
    if (!(mstatus & 0x8)) return 0;
    uc_reg_read(uc, UC_RISCV_REG_MIE, &mie);
    return (mie & pending) != 0;
}

static inline void swuc_safepoint_block(uc_engine *uc, uint64_t address, uint32_t size, void *data) {
    (void)address; (void)size;
    struct swuc_attention *a = (struct swuc_attention *)data;
    if (__atomic_load_n(&a->stop, __ATOMIC_RELAXED)) {
        __atomic_store_n(&a->stopped, 1, __ATOMIC_RELAXED);
        uc_emu_stop(uc);
        return;
    }
    uint32_t pending = __atomic_load_n(&a->pending, __ATOMIC_RELAXED);
    if (pending && swuc_interrupt_unmasked(uc, pending)) {
        __atomic_store_n(&a->stopped, 1, __ATOMIC_RELAXED);
        uc_emu_stop(uc);
    }
}
static inline void *swuc_safepoint_block_callback(void) { return (void *)&swuc_safepoint_block; }
static inline size_t swuc_attention_size(void) { return sizeof(struct swuc_attention); }
static inline void swuc_attention_init(void *data) {
    struct swuc_attention *a = (struct swuc_attention *)data;
    a->stop = 0; a->stopped = 0; a->pad[0] = 0; a->pad[1] = 0; a->pending = 0;
}
static inline void swuc_attention_pending_set(void *data, uint32_t bits, int on) {
    struct swuc_attention *a = (struct swuc_attention *)data;
    if (on) __atomic_fetch_or(&a->pending, bits, __ATOMIC_SEQ_CST);
    else __atomic_fetch_and(&a->pending, ~bits, __ATOMIC_SEQ_CST);
}
static inline uint32_t swuc_attention_pending(void *data) {
    return __atomic_load_n(&((struct swuc_attention *)data)->pending, __ATOMIC_SEQ_CST);
}
static inline void swuc_flag_store(unsigned char *flag, int value) { __atomic_store_n(flag, (unsigned char)value, __ATOMIC_SEQ_CST); }
static inline int swuc_flag_load(unsigned char *flag) { return __atomic_load_n(flag, __ATOMIC_SEQ_CST); }
#endif
