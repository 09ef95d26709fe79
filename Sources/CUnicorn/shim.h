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
// translation block, so it must cost next to nothing. `flags` is two bytes: [0] a stop is
// requested (set by any thread), [1] the hook ended the run for it.
static inline void swuc_safepoint_block(uc_engine *uc, uint64_t address, uint32_t size, void *flags) {
    (void)address; (void)size;
    unsigned char *f = (unsigned char *)flags;
    if (__atomic_load_n(&f[0], __ATOMIC_RELAXED)) {
        __atomic_store_n(&f[1], 1, __ATOMIC_RELAXED);
        uc_emu_stop(uc);
    }
}
static inline void *swuc_safepoint_block_callback(void) { return (void *)&swuc_safepoint_block; }
static inline void swuc_flag_store(unsigned char *flag, int value) { __atomic_store_n(flag, (unsigned char)value, __ATOMIC_SEQ_CST); }
static inline int swuc_flag_load(unsigned char *flag) { return __atomic_load_n(flag, __ATOMIC_SEQ_CST); }
#endif
