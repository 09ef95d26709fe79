import FirmwareKit
import MetalIO
import Remoteproc
@testable import RemoteSim
import Testing

@Suite("An emulated core's engine, opened when the board is powered")
struct EngineReserveTests {
    @Test("configure opens the engine; the start runs the firmware on it; the next power-up opens another",
          .timeLimit(.minutes(1)), arguments: FirmwareArchitecture.allCases)
    func configureOpensStartTakes(architecture: FirmwareArchitecture) throws {
        let elf = try FirmwareBuilder.forThisPackage().build(program: "minimal", architecture: architecture)
        let cpu = EmulatedCPU(architecture.cpu)
        let board = try Board(firmware: cpu)
        let processor = try board.makeProcessor()
        #expect(!cpu.reserve.holds(architecture.cpu, memories: board.memories))
        for round in 1...2 {
            try processor.configure()
            #expect(cpu.reserve.holds(architecture.cpu, memories: board.memories), "round \(round)")
            try processor.load(elf.path, from: FileImageStore())
            func greetings() -> Int { board.trace.consoleLines.filter { $0.hasPrefix("minimal: hello") }.count }
            let before = greetings()
            try processor.start()
            #expect(waitUntil(.seconds(20)) { greetings() > before }, "round \(round)")
            // The run took it: nothing is held while the core runs.
            #expect(!cpu.reserve.holds(architecture.cpu, memories: board.memories), "round \(round)")
            try processor.shutdown()
        }
    }

    @Test("an engine is taken only for the architecture and the memories it mapped")
    func takenOnlyForItsMemories() throws {
        let first = try BoardLayout().makeMemories(), second = try BoardLayout().makeMemories()
        let reserve = EngineReserve()
        reserve.prepare(.rv32, memories: first)
        #expect(reserve.holds(.rv32, memories: first))
        #expect(reserve.take(.rv32, memories: second) == nil)
        #expect(reserve.take(.cortexM4, memories: first) == nil)
        #expect(reserve.take(.rv32, memories: Array(first.dropLast())) == nil)
        #expect(reserve.holds(.rv32, memories: first), "a refused take leaves the engine where it is")
        #expect(reserve.take(.rv32, memories: first) != nil)
        #expect(reserve.take(.rv32, memories: first) == nil, "taken once")
        // Preparing for other memories replaces the engine held.
        reserve.prepare(.rv32, memories: first)
        reserve.prepare(.cortexM4, memories: second)
        #expect(!reserve.holds(.rv32, memories: first))
        #expect(reserve.holds(.cortexM4, memories: second))
    }
}
