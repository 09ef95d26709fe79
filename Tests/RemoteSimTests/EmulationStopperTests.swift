import MetalIO
@testable import RemoteSim
import Testing

@Suite("Stopping an emulated run from another thread")
struct EmulationStopperTests {
    @Test("a stopper kept after its engine is closed does nothing: no uc_emu_stop lands in the freed engine", arguments: CPUArchitecture.allCases)
    func stopperOutlivesItsEngine(architecture: CPUArchitecture) throws {
        var engine: UnicornEngine? = try UnicornEngine(architecture: architecture)
        let stopper = try #require(engine).stopper
        #expect(stopper.gate.isOpen)
        stopper.stopOnce()   // open: a stop with no run is harmless
        engine = nil
        #expect(!stopper.gate.isOpen, "closing the engine closes its stop gate first")
        stopper.stopOnce()
        // A stop listener copied out just before the run ended still sees the run flag set.
        let run = RunFlag()
        run.value.store(true, ordering: .sequentiallyConsistent)
        stopper.stop(while: run, clock: RealTimeClock.shared, limit: .milliseconds(5))
        #expect(run.stoppers.load(ordering: .sequentiallyConsistent) == 0)
    }
}
