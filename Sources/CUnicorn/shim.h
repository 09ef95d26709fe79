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
    uint32_t pending;        // raised interrupt lines: RV32 mip bits (MSIP 3, MTIP 7, MEIP 11);
                             // ARMv7-M bit 0, the mailbox's line (IRQ 0)
    // ARMv7-M only (priorities: lower is more urgent; group priorities, AIRCR.PRIGROUP applied)
    int32_t pending_priority; // the most urgent enabled pending exception but the line (INT32_MAX: none)
    int32_t line_priority;    // IRQ 0's, while it is enabled and not active (INT32_MAX otherwise)
    int32_t active_priority;  // the execution priority the active exceptions make (256: none active)
    uint32_t group_mask;      // the group-priority bits of a priority byte
    // RV32 only: traps entered and not yet returned from; a block starting at `mepc` while one is
    // open is the return (`mret`, which the CPU executes itself): the run ends there, noted.
    uint32_t trap_depth;
    unsigned char returned;   // a return was seen (the core thread takes it)
    unsigned char pad2[3];
    uint64_t returned_to;
    // Virtual time (only the core thread touches these, between runs and in its own callbacks):
    // while `counting`, the hook counts the instructions of every block it lets run into
    // `executed`, and ends the run before a block that would take `executed` past `budget`
    // (a block is let run when nothing ran yet, so a run always makes progress).
    unsigned char counting;
    unsigned char pad3[7];
    uint64_t executed;
    uint64_t budget;
    // Instructions per block, by block start (direct-mapped; a block is decoded once).
    struct { uint64_t address; uint32_t size; uint32_t count; } blocks[1024];
};

// The instructions in the `size`-byte block at `address`: decoded from memory once, then cached.
// Lengths: Thumb-2 halfwords 0b11101…, 0b11110…, 0b11111… start a 32-bit instruction; RISC-V
// parcels whose two low bits are 11 start a 32-bit one (the rest are 16-bit compressed ones).
static inline uint32_t swuc_block_instructions(uc_engine *uc, struct swuc_attention *a, uint64_t address, uint32_t size, int armv7m) {
    uint32_t slot = (uint32_t)((address >> 1) & 1023);
    if (a->blocks[slot].address == address && a->blocks[slot].size == size && a->blocks[slot].count) return a->blocks[slot].count;
    uint8_t code[4096];
    uint32_t length = size < sizeof code ? size : (uint32_t)sizeof code;
    uint32_t count = 0;
    if (length >= 2 && uc_mem_read(uc, address, code, length) == UC_ERR_OK) {
        for (uint32_t at = 0; at + 1 < length; ) {
            uint16_t half = (uint16_t)(code[at] | (code[at + 1] << 8));
            int wide = armv7m ? (half >> 11) >= 0x1D : (half & 3) == 3;
            at += wide ? 4 : 2;
            count++;
        }
    }
    if (count == 0) count = 1;   // unreadable or tiny: one instruction
    a->blocks[slot].address = address;
    a->blocks[slot].size = size;
    a->blocks[slot].count = count;
    return count;
}

// Counts the block about to run; 0 when the run must end before it (its budget is spent).
static inline int swuc_count_block(uc_engine *uc, struct swuc_attention *a, uint64_t address, uint32_t size, int armv7m) {
    if (!a->counting) return 1;
    uint32_t n = swuc_block_instructions(uc, a, address, size, armv7m);
    if (a->executed != 0 && a->executed + n > a->budget) return 0;
    a->executed += n;
    return 1;
}

// Whether RV32's mask registers (mstatus.MIE, mie) let a raised interrupt in.
static inline int swuc_rv32_unmasked(uc_engine *uc, uint32_t pending) {
    uint64_t mstatus = 0, mie = 0;
    uc_reg_read(uc, UC_RISCV_REG_MSTATUS, &mstatus);
    if (!(mstatus & 0x8)) return 0;
    uc_reg_read(uc, UC_RISCV_REG_MIE, &mie);
    return (mie & pending) != 0;
}

// The ARMv7-M masks over a pending group priority: FAULTMASK lets only NMI (-2) in, PRIMASK
// only NMI and HardFault (< 0), BASEPRI (when not 0) only what is more urgent than its group.
static inline int swuc_armv7m_unmasked(uc_engine *uc, int32_t priority, uint32_t group_mask) {
    uint32_t value = 0;
    uc_reg_read(uc, UC_ARM_REG_FAULTMASK, &value);
    if (value & 1) return priority < -1;
    uc_reg_read(uc, UC_ARM_REG_PRIMASK, &value);
    if (value & 1) return priority < 0;
    uc_reg_read(uc, UC_ARM_REG_BASEPRI, &value);
    value &= 0xFF;
    if (value) return priority < (int32_t)(value & group_mask);
    return 1;
}

static inline void swuc_attention_stop_run(uc_engine *uc, struct swuc_attention *a) {
    __atomic_store_n(&a->stopped, 1, __ATOMIC_RELAXED);
    uc_emu_stop(uc);
}

static inline void swuc_safepoint_block_rv32(uc_engine *uc, uint64_t address, uint32_t size, void *data) {
    (void)size;
    struct swuc_attention *a = (struct swuc_attention *)data;
    if (__atomic_load_n(&a->stop, __ATOMIC_RELAXED)) { swuc_attention_stop_run(uc, a); return; }
    if (a->trap_depth) {
        uint64_t mepc = 0;
        uc_reg_read(uc, UC_RISCV_REG_MEPC, &mepc);
        if ((mepc & ~(uint64_t)1) == address) {
            a->trap_depth--;
            a->returned = 1;
            a->returned_to = address;
            swuc_attention_stop_run(uc, a);
            return;
        }
    }
    uint32_t pending = __atomic_load_n(&a->pending, __ATOMIC_RELAXED);
    if (pending && swuc_rv32_unmasked(uc, pending)) { swuc_attention_stop_run(uc, a); return; }
    if (!swuc_count_block(uc, a, address, size, 0)) swuc_attention_stop_run(uc, a);
}

static inline void swuc_safepoint_block_armv7m(uc_engine *uc, uint64_t address, uint32_t size, void *data) {
    struct swuc_attention *a = (struct swuc_attention *)data;
    if (__atomic_load_n(&a->stop, __ATOMIC_RELAXED)) { swuc_attention_stop_run(uc, a); return; }
    int32_t priority = __atomic_load_n(&a->pending_priority, __ATOMIC_RELAXED);
    if (__atomic_load_n(&a->pending, __ATOMIC_RELAXED) & 1) {
        int32_t line = __atomic_load_n(&a->line_priority, __ATOMIC_RELAXED);
        if (line < priority) priority = line;
    }
    if (priority < __atomic_load_n(&a->active_priority, __ATOMIC_RELAXED)
        && swuc_armv7m_unmasked(uc, priority, __atomic_load_n(&a->group_mask, __ATOMIC_RELAXED))) { swuc_attention_stop_run(uc, a); return; }
    if (!swuc_count_block(uc, a, address, size, 1)) swuc_attention_stop_run(uc, a);
}

static inline void *swuc_safepoint_block_callback(int armv7m) {
    return armv7m ? (void *)&swuc_safepoint_block_armv7m : (void *)&swuc_safepoint_block_rv32;
}
// An empty code hook: with one over an instruction, Unicorn 2.0.1 keeps the guest PC exact at
// it, so a memory fault reports the faulting instruction (without, the PC still holds the start
// of its translated block, though the instructions before it in the block have run).
static inline void swuc_precise_pc_code(uc_engine *uc, uint64_t address, uint32_t size, void *data) {
    (void)uc; (void)address; (void)size; (void)data;
}
static inline void *swuc_precise_pc_callback(void) { return (void *)&swuc_precise_pc_code; }
static inline size_t swuc_attention_size(void) { return sizeof(struct swuc_attention); }
static inline void swuc_attention_init(void *data) {
    struct swuc_attention *a = (struct swuc_attention *)data;
    a->stop = 0; a->stopped = 0; a->pad[0] = 0; a->pad[1] = 0; a->pending = 0;
    a->pending_priority = INT32_MAX; a->line_priority = INT32_MAX; a->active_priority = 256; a->group_mask = 0xFF;
    a->trap_depth = 0; a->returned = 0; a->returned_to = 0;
    a->counting = 0; a->executed = 0; a->budget = 0;
    for (int i = 0; i < 1024; i++) { a->blocks[i].address = 0; a->blocks[i].size = 0; a->blocks[i].count = 0; }
}
// Virtual time: count instructions from now on (the core thread, before its first run).
static inline void swuc_attention_count(void *data, int on) { ((struct swuc_attention *)data)->counting = (unsigned char)(on != 0); }
// The instructions counted since the last call (cleared), and the budget for what follows.
static inline uint64_t swuc_attention_take_executed(void *data, uint64_t budget) {
    struct swuc_attention *a = (struct swuc_attention *)data;
    uint64_t executed = a->executed;
    a->executed = 0;
    a->budget = budget;
    return executed;
}
// RV32: a trap was entered (the core thread, between runs); deep nesting is not followed.
static inline void swuc_attention_trap_entered(void *data) {
    struct swuc_attention *a = (struct swuc_attention *)data;
    if (a->trap_depth < 16) a->trap_depth++;
}
// RV32: the return the block hook saw since the last call, if any (the core thread, between runs).
static inline int swuc_attention_take_return(void *data, uint64_t *address) {
    struct swuc_attention *a = (struct swuc_attention *)data;
    if (!a->returned) return 0;
    a->returned = 0;
    *address = a->returned_to;
    return 1;
}
static inline void swuc_attention_pending_set(void *data, uint32_t bits, int on) {
    struct swuc_attention *a = (struct swuc_attention *)data;
    if (on) __atomic_fetch_or(&a->pending, bits, __ATOMIC_SEQ_CST);
    else __atomic_fetch_and(&a->pending, ~bits, __ATOMIC_SEQ_CST);
}
static inline uint32_t swuc_attention_pending(void *data) {
    return __atomic_load_n(&((struct swuc_attention *)data)->pending, __ATOMIC_SEQ_CST);
}
// The ARMv7-M priorities the hook compares (the board computes them under its own lock).
static inline void swuc_attention_set_priorities(void *data, int32_t pending, int32_t line, int32_t active, uint32_t group_mask) {
    struct swuc_attention *a = (struct swuc_attention *)data;
    __atomic_store_n(&a->group_mask, group_mask, __ATOMIC_SEQ_CST);
    __atomic_store_n(&a->line_priority, line, __ATOMIC_SEQ_CST);
    __atomic_store_n(&a->active_priority, active, __ATOMIC_SEQ_CST);
    __atomic_store_n(&a->pending_priority, pending, __ATOMIC_SEQ_CST);
}
static inline void swuc_flag_store(unsigned char *flag, int value) { __atomic_store_n(flag, (unsigned char)value, __ATOMIC_SEQ_CST); }
static inline int swuc_flag_load(unsigned char *flag) { return __atomic_load_n(flag, __ATOMIC_SEQ_CST); }
static inline void swuc_attention_priorities(void *data, int32_t *pending, int32_t *line, int32_t *active, uint32_t *group_mask) {
    struct swuc_attention *a = (struct swuc_attention *)data;
    *pending = __atomic_load_n(&a->pending_priority, __ATOMIC_SEQ_CST);
    *line = __atomic_load_n(&a->line_priority, __ATOMIC_SEQ_CST);
    *active = __atomic_load_n(&a->active_priority, __ATOMIC_SEQ_CST);
    *group_mask = __atomic_load_n(&a->group_mask, __ATOMIC_SEQ_CST);
}
#endif
