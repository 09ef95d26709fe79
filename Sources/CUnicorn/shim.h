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
#endif
