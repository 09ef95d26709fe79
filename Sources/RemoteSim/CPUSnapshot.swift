/// An emulated core's registers at one moment, as a debugger sees them: the list, order and GDB
/// numbering of ``UnicornEngine/debugRegisters(_:)`` (Cortex-M4: r0–r12, sp, lr, pc, xpsr, msp,
/// psp, primask, basepri, faultmask, control; RV32: x0–x31, pc and the machine CSRs). Taken by
/// the core's thread whenever the core halts or parks; kept in ``FirmwareHalt`` and written into
/// core dumps (``CoreDump``).
public struct CPUSnapshot: Hashable, Sendable {
    public struct Register: Hashable, Sendable {
        public var name: String
        /// The register's number in GDB's remote protocol (and in the target description).
        public var number: Int
        public var value: UInt32
    }

    public let architecture: CPUArchitecture
    /// Every register of ``UnicornEngine/debugRegisters(_:)``, in that order.
    public let registers: [Register]
    /// Whether `pc` is the exact instruction. Without exact PCs (``EmulatedCPU/exactPCs``) Unicorn
    /// 2.0.1 knows only the start of the translated block inside a run: a memory fault's pc, or
    /// that of a core parked inside a WAIT read, is then the block's start — the registers are
    /// those at the instruction itself.
    public internal(set) var isProgramCounterExact = true

    /// A snapshot from values in the debugger's order; `nil` when the count is not the architecture's.
    public init?(architecture: CPUArchitecture, values: [UInt64]) {
        let layout = UnicornEngine.debugRegisters(architecture)
        guard values.count == layout.count else { return nil }
        self.architecture = architecture
        registers = zip(layout, values).map { Register(name: $0.name, number: $0.number, value: UInt32(truncatingIfNeeded: $1)) }
    }

    /// A snapshot from (GDB number, value) pairs, as a core dump stores them; `nil` unless every
    /// register of the architecture is there exactly once.
    public init?(architecture: CPUArchitecture, numbered: [(number: Int, value: UInt32)]) {
        let layout = UnicornEngine.debugRegisters(architecture)
        guard numbered.count == layout.count else { return nil }
        var values: [UInt64] = []
        for register in layout {
            let matches = numbered.filter { $0.number == register.number }
            guard matches.count == 1 else { return nil }
            values.append(UInt64(matches[0].value))
        }
        self.init(architecture: architecture, values: values)
    }

    /// The register called `name` ("pc", "sp", "r7", "mepc", …).
    public subscript(name: String) -> UInt32? { registers.first { $0.name == name }?.value }

    /// Where the core stands.
    public var programCounter: UInt32 { self["pc"] ?? 0 }

    /// The values in the debugger's order (what a GDB `g` packet carries).
    public var values: [UInt64] { registers.map { UInt64($0.value) } }
}

extension UnicornEngine {
    /// The registers now, with `pc` where the core stands (the engine's own PC register lags
    /// behind between runs and inside callbacks). A pc taken inside a run (a fault's, or the
    /// engine's inside a callback) is exact only when the engine keeps it so.
    func snapshot(pc: UInt64, insideRun: Bool = false) -> CPUSnapshot {
        let ids = debugRegisterIDs
        var values = ids.map { readDebugRegister($0) }
        if let index = ids.firstIndex(of: pcRegisterID) { values[index] = pc }
        // The list and the values come from one table: the count always matches.
        var snapshot = CPUSnapshot(architecture: architecture, values: values)!
        snapshot.isProgramCounterExact = !insideRun || hasExactPCs
        return snapshot
    }
}
