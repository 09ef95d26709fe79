#if canImport(Glibc)
import Glibc
#endif
@testable import MetalIO
import Testing

@Suite("WakeSignal's spin bound")
struct WakeSignalSpinTests {
    /// Waits that end without a signal, each halving the bound, down to the minimum.
    private func driveToMinimum(_ signal: WakeSignal) {
        for _ in 0..<8 {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            now.tv_nsec += 200_000
            if now.tv_nsec >= 1_000_000_000 { now.tv_sec += 1; now.tv_nsec -= 1_000_000_000 }
            #expect(!signal.waitUntilWallClock(now, spinLimit: .microseconds(1)))
        }
    }

    @Test("a park learns from when the signal was given, not from how long the parked thread took to wake")
    func learnsFromTheSignalsTime() {
        let signal = WakeSignal()
        #expect(signal.spinBoundNanoseconds == WakeSignal.maximumSpin.totalNanoseconds)
        driveToMinimum(signal)
        #expect(signal.spinBoundNanoseconds == WakeSignal.minimumSpin.totalNanoseconds)

        // A signal given 5 µs after the wait began: a 10 µs spin would have caught it, however
        // late the waiter woke (here: much later, the learning runs long after the signal).
        signal.signal()
        #expect(signal.tryTake())
        signal.learnAfterPark(since: signal.lastSignalNanoseconds - 5_000)
        #expect(signal.spinBoundNanoseconds == 10_000)
        // One given after the longest spin: halved.
        signal.signal()
        #expect(signal.tryTake())
        signal.learnAfterPark(since: signal.lastSignalNanoseconds - 2 * WakeSignal.maximumSpin.totalNanoseconds)
        #expect(signal.spinBoundNanoseconds == 5_000)
        // A signal noted before the wait began (it raced the spin's last look): taken as at once.
        signal.learnAfterPark(since: signal.lastSignalNanoseconds + 1_000_000)
        #expect(signal.spinBoundNanoseconds == WakeSignal.minimumSpin.totalNanoseconds)
    }

    @Test("a real park: a signal long after the wait began leaves the bound at its minimum; the wait returns", .timeLimit(.minutes(1)))
    func lateSignal() throws {
        let signal = WakeSignal(), started = WakeSignal(spins: false), done = WakeSignal(spins: false)
        driveToMinimum(signal)
        let waiter = try PlatformThread(name: "waiter") {
            started.signal()
            signal.waitWithoutLimit()
            done.signal()
        }
        started.waitWithoutLimit()
        usleep(20_000)              // the waiter has parked long ago (its spin is 1 µs)
        signal.signal()
        done.waitWithoutLimit()
        waiter.join()
        #expect(signal.spinBoundNanoseconds == WakeSignal.minimumSpin.totalNanoseconds)
    }

    @Test("a signal that never spins notes no time")
    func parkingSignalNotesNothing() {
        let signal = WakeSignal(spins: false)
        signal.signal()
        #expect(signal.lastSignalNanoseconds == 0)
        #expect(signal.tryTake())
    }

    @Test("a spin looking at a condition: returns what it finds, stops at a new signal without taking it, takes leftover ones first, gives up after its limit")
    func spinLookingAtACondition() {
        let signal = WakeSignal()
        // The condition comes true on the fifth look.
        var looks = 0
        #expect(signal.spin { () -> Int? in looks += 1; return looks == 5 ? 42 : nil } == 42)
        #expect(looks == 5)
        // A signal given during the spin ends it and stays for the wait.
        looks = 0
        #expect(signal.spin { () -> Int? in looks += 1; if looks == 3 { signal.signal() }; return nil } == nil)
        #expect(looks == 3)
        #expect(signal.tryTake())
        // Signals left over from before are taken first: they do not end the spin, and the
        // condition they announced is looked at.
        signal.signal()
        signal.signal()
        looks = 0
        #expect(signal.spin { () -> Int? in looks += 1; return looks == 2 ? 7 : nil } == 7)
        #expect(looks == 2)
        #expect(!signal.tryTake())
        // A limit shorter than the longest spin: it ends at the first look at the clock.
        looks = 0
        #expect(signal.spin(for: .zero) { () -> Int? in looks += 1; return nil } == nil)
        #expect(looks == 8)
        // Nothing comes: the spin ends by itself (after about maximumSpin), having looked more than once.
        looks = 0
        #expect(signal.spin { () -> Int? in looks += 1; return nil } == nil)
        #expect(looks > 8)
        #expect(!signal.tryTake())
        // A signal whose waits do not spin does not spin here either.
        let parking = WakeSignal(spins: false)
        looks = 0
        #expect(parking.spin { () -> Int? in looks += 1; return 1 } == nil)
        #expect(looks == 0)
    }
}
