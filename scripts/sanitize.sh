#!/usr/bin/env bash
# Runs the test suite under a sanitizer, in its own build directory (.build/sanitize-KIND), so
# the ordinary debug build is left alone.
#
#   scripts/sanitize.sh thread  [swift test options…]   ThreadSanitizer: any warning fails
#   scripts/sanitize.sh address [swift test options…]   AddressSanitizer + LeakSanitizer
#
# Extra options go to `swift test` (e.g. --filter RPMsgTests for a bounded subset). The run fails
# when a test fails, when the sanitizer reports anything, or when no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-}
case "$kind" in
  thread) export TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1${TSAN_OPTIONS:+:$TSAN_OPTIONS}" ;;
  address)
    export ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    # Only third-party allocations are suppressed; the file says which and why.
    export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=1${LSAN_OPTIONS:+:$LSAN_OPTIONS}" ;;
  *) echo "usage: scripts/sanitize.sh thread|address [swift test options…]" >&2; exit 2 ;;
esac
shift
scratch=.build/sanitize-$kind
log=$scratch/test.log
mkdir -p "$scratch"
swift build --build-tests --sanitize="$kind" --scratch-path "$scratch"
set +e
swift test --skip-build --sanitize="$kind" --scratch-path "$scratch" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
reports=$(grep -cE '^(WARNING: ThreadSanitizer|==[0-9]+==ERROR: (AddressSanitizer|LeakSanitizer))' "$log" || true)
xctest=$(grep -E 'Executed [0-9]+ tests?, with' "$log" | tail -1 | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/' || true)
testing=$(grep -E 'Test run with [0-9]+ tests?' "$log" | tail -1 | sed -E 's/.*Test run with ([0-9]+) tests?.*/\1/' || true)
ran=$(( ${xctest:-0} + ${testing:-0} ))
echo "sanitize $kind: swift test exit status $status, $reports sanitizer report(s), ${ran:-0} tests"
if [ "$reports" -ne 0 ]; then echo "sanitize $kind: the sanitizer reported problems (see $log)"; exit 1; fi
if [ "$status" -ne 0 ]; then echo "sanitize $kind: tests failed"; exit 1; fi
if [ "${ran:-0}" = 0 ]; then echo "sanitize $kind: no test ran"; exit 1; fi
echo "sanitize $kind: clean"
