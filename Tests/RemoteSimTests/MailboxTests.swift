import Foundation
@testable import RemoteSim
import Synchronization
import Testing
import Virtio
import MetalIO

/// Collects mailbox events thread-safely.
final class EventRecorder: Sendable {
    private let events = MetalMutex<[MailboxEvent]>([])
    init(_ mailbox: Mailbox) { mailbox.setEventHandler { event in self.events.withLock { $0.append(event) } } }
    var all: [MailboxEvent] { events.withLock { $0 } }
    var consoleLines: [String] { all.compactMap { if case let .consoleLine(l) = $0 { l } else { nil } } }
}

@Suite("Mailbox")
struct MailboxTests {
    typealias R = Mailbox.Register

    @Test("identification registers and unknown offsets")
    func identification() throws {
        let mailbox = try Mailbox(hostInterrupts: .poll)
        #expect(mailbox.read(R.magic.rawValue) == 0x5253_494D)
        #expect(mailbox.read(R.version.rawValue) == 3, "version 3: power management (2) and interrupts")
        #expect(mailbox.read(R.pmControl.rawValue) == 0, "no firmware takes part in the handshake until it says so")
        #expect(mailbox.read(R.coreClock.rawValue) == 0, "no core timers until an emulated core says its clock")
        mailbox.setCoreClock(CoreClockRate(hertz: 48_000_000))
        #expect(mailbox.read(R.coreClock.rawValue) == 48_000_000)
        mailbox.write(R.coreClock.rawValue, 5)      // read-only
        #expect(mailbox.read(R.coreClock.rawValue) == 48_000_000)
        #expect(mailbox.read(R.irqEnable.rawValue) == 0, "no PENDING bit raises the interrupt after reset")
        #expect(mailbox.read(0x48) == 0)
        #expect(mailbox.read(0x0FFC) == 0)
        mailbox.write(R.magic.rawValue, 7)          // read-only: ignored
        #expect(mailbox.read(R.magic.rawValue) == 0x5253_494D)
    }

    @Test("host notify sets PENDING bits; ACK clears only the bits written; ids above 31 are ignored")
    func pendingAndAck() throws {
        let mailbox = try Mailbox(hostInterrupts: .poll)
        mailbox.notify(0)
        mailbox.notify(5)
        mailbox.notify(5)
        mailbox.notify(40)
        #expect(mailbox.read(R.pending.rawValue) == 0b10_0001)
        mailbox.write(R.ack.rawValue, 1 << 5)
        #expect(mailbox.read(R.pending.rawValue) == 1)
        mailbox.write(R.ack.rawValue, 0xFFFF_FFFF)
        #expect(mailbox.read(R.pending.rawValue) == 0)
    }

    @Test("only the kick that sets PENDING from 0 wakes the core: kicks onto bits still pending are not signalled again, and WAIT still sees each")
    func kicksOntoPendingBitsDoNotSignal() throws {
        let mailbox = try Mailbox(hostInterrupts: .poll)
        mailbox.notify(1)
        mailbox.notify(1)
        mailbox.notify(4)
        #expect(mailbox.wake.tryTake(), "the first kick wakes the core")
        #expect(!mailbox.wake.tryTake(), "kicks onto pending bits signalled again")
        #expect(mailbox.read(R.wait.rawValue) == 0b1_0010)
        // Acknowledged, PENDING is 0 again: the next kick wakes the core.
        mailbox.write(R.ack.rawValue, 0b1_0010)
        mailbox.notify(4)
        #expect(mailbox.wake.tryTake())
        #expect(mailbox.read(R.wait.rawValue) == 0b1_0000)
    }

    @Test("WAIT returns PENDING at once when set, without clearing it")
    func waitReturnsPending() throws {
        let mailbox = try Mailbox(hostInterrupts: .poll)
        mailbox.notify(2)
        #expect(mailbox.read(R.wait.rawValue) == 4)
        #expect(mailbox.read(R.pending.rawValue) == 4)
    }

    @Test("WAIT blocks until the host notifies", .timeLimit(.minutes(1)))
    func waitBlocks() throws {
        let mailbox = try Mailbox(hostInterrupts: .poll)
        let result = Atomic<UInt32>(0xDEAD)
        let done = WakeSignal()
        Thread {
            result.store(mailbox.read(R.wait.rawValue), ordering: .relaxed)
            done.signal()
        }.start()
        #expect(!done.wait(timeout: .milliseconds(50)), "WAIT returned before any notify")
        mailbox.notify(3)
        #expect(done.wait(timeout: .seconds(5)))
        #expect(result.load(ordering: .relaxed) == 8)
    }

    @Test("a stop releases WAIT and SLEEP with 0, and keeps doing so until reset", .timeLimit(.minutes(1)))
    func stopReleases() throws {
        let mailbox = try Mailbox(hostInterrupts: .poll)
        let done = WakeSignal()
        let result = Atomic<UInt32>(0xDEAD)
        Thread {
            result.store(mailbox.read(R.wait.rawValue), ordering: .relaxed)
            done.signal()
        }.start()
        usleep(20_000)
        mailbox.requestStop()
        #expect(done.wait(timeout: .seconds(5)))
        #expect(result.load(ordering: .relaxed) == 0)
        let clock = ContinuousClock()
        let start = clock.now
        mailbox.write(R.sleep.rawValue, 5_000_000)   // 5 s, but stopped: returns at once
        #expect(clock.now - start < .seconds(1))
        mailbox.reset()
        #expect(!mailbox.isStopRequested)
    }

    @Test("SLEEP lasts its time, or ends early on a notify")
    func sleep() throws {
        let mailbox = try Mailbox(hostInterrupts: .poll)
        let clock = ContinuousClock()
        var start = clock.now
        mailbox.write(R.sleep.rawValue, 20_000)
        #expect(clock.now - start >= .milliseconds(19))
        mailbox.notify(1)
        start = clock.now
        mailbox.write(R.sleep.rawValue, 5_000_000)
        #expect(clock.now - start < .seconds(1))
    }

    @Test("KICK reaches the host handler in poll mode only when polled; a burst for one id coalesces; above 31 is a firmware error")
    func kicks() throws {
        let mailbox = try Mailbox(hostInterrupts: .poll)
        let events = EventRecorder(mailbox)
        let seen = MetalMutex<[NotifyID]>([])
        mailbox.setKickHandler { id in seen.withLock { $0.append(id) } }
        for _ in 0..<10 { mailbox.write(R.kick.rawValue, 1) }
        mailbox.write(R.kick.rawValue, 2)
        mailbox.write(R.kick.rawValue, 32)
        #expect(seen.withLock { $0 }.isEmpty)
        #expect(mailbox.poll() == 2)
        #expect(seen.withLock { $0 } == [1, 2])
        #expect(events.all.contains(.invalidKick(32)))
        #expect(events.all.filter { $0 == .kick(1) }.count == 10)
    }

    @Test("KICK reaches the host on the interrupt thread (threaded delivery)")
    func kickThread() throws {
        let mailbox = try Mailbox(hostInterrupts: .thread)
        let got = WakeSignal()
        mailbox.setKickHandler { id in if id == 4 { got.signal() } }
        mailbox.kick(4)
        #expect(got.wait(timeout: .seconds(5)))
        mailbox.hostInterrupts.shutdown()
    }

    @Test("CONSOLE: lines end at \\n, \\r is dropped, long lines wrap at 256 bytes")
    func console() throws {
        let mailbox = try Mailbox(hostInterrupts: .poll)
        let events = EventRecorder(mailbox)
        for byte in Array("hello\r\nworld\n".utf8) { mailbox.write(R.console.rawValue, UInt32(byte)) }
        for _ in 0..<300 { mailbox.write(R.console.rawValue, 0x100 | UInt32(UInt8(ascii: "x"))) }  // only the low byte counts
        mailbox.write(R.console.rawValue, UInt32(UInt8(ascii: "\n")))
        #expect(events.consoleLines == ["hello", "world", String(repeating: "x", count: 256), String(repeating: "x", count: 44)])
    }

    @Test("PANIC records the first code, stops the core and is reported")
    func panic() throws {
        let mailbox = try Mailbox(hostInterrupts: .poll)
        let events = EventRecorder(mailbox)
        mailbox.write(R.panic.rawValue, 0xBAD)
        mailbox.write(R.panic.rawValue, 0xF00)
        #expect(mailbox.panicCode == 0xBAD)
        #expect(mailbox.isStopRequested)
        #expect(mailbox.read(R.wait.rawValue) == 0)
        #expect(events.all.contains(.panic(0xBAD)))
        mailbox.reset()
        #expect(mailbox.panicCode == nil)
    }

    @Test("TICKS count microseconds; reading LO latches HI")
    func ticks() throws {
        let mailbox = try Mailbox(hostInterrupts: .poll)
        let first = mailbox.read(R.ticksLow.rawValue)
        usleep(5_000)
        let second = mailbox.read(R.ticksLow.rawValue)
        #expect(second &- first >= 4_000)
        #expect(mailbox.read(R.ticksHigh.rawValue) == 0)
    }

    @Test("the watchdog expires after its time of running, not of waiting; kicking and disarming reset it")
    func watchdog() throws {
        let mailbox = try Mailbox(hostInterrupts: .poll)
        mailbox.write(R.watchdog.rawValue, 30)
        #expect(!mailbox.watchdogExpired)
        _ = mailbox.waitForInterrupt(timeout: .milliseconds(60))   // blocked: does not count
        #expect(!mailbox.watchdogExpired)
        usleep(40_000)                                              // running: counts
        #expect(mailbox.watchdogExpired)
        mailbox.write(R.watchdog.rawValue, 30)                      // kick
        #expect(!mailbox.watchdogExpired)
        mailbox.write(R.watchdog.rawValue, 0)                       // disarm
        usleep(40_000)
        #expect(!mailbox.watchdogExpired)
    }
}

@Suite("Mailbox over a long run")
struct MailboxLongRunTests {
    @Test("half a million events and kicks reach their handlers, the last as readily as the first", .timeLimit(.minutes(1)))
    func manyEvents() throws {
        // The callbacks were once kept so that every access wrapped them in more thunks: each event
        // called through a longer chain (streams slowed down quadratically, then the stack overflowed).
        let mailbox = try Mailbox(hostInterrupts: .poll)
        let events = Atomic<Int>(0), kicks = Atomic<Int>(0)
        mailbox.setEventHandler { _ in events.add(1, ordering: .relaxed) }
        mailbox.setKickHandler { _ in kicks.add(1, ordering: .relaxed) }
        for i in 0..<250_000 {
            mailbox.notify(NotifyID(UInt32(i % 8)))
            mailbox.kick(1)
            if i % 64 == 0 { mailbox.poll() }
        }
        mailbox.poll()
        #expect(events.load(ordering: .relaxed) == 500_000)
        #expect(kicks.load(ordering: .relaxed) > 0)
    }
}
