#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer (+ AddressSanitizer) of every untrusted input.
#
#   scripts/fuzz.sh [TARGET|all] [--runs N | --time SECONDS]     (default: all, --time 60)
#
# Targets (Fuzz/Targets/): resource-table elf-image vring-device vring-driver rpmsg-message
# scenario-file gdb-packets core-file. Each starts from its seeds (Fuzz/seeds/TARGET: *.hex are written as
# bytes; scenario-file also gets Scenarios/*.yaml, elf-image the built minimal/echo firmware) and
# keeps what it learns in .build/fuzz/corpus/TARGET. A crash, a leak or a sanitizer report stops
# the target; the input is saved in .build/fuzz/findings/TARGET/ and the script fails. Keep a
# finding as a regression test once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
all=(resource-table elf-image vring-device vring-driver rpmsg-message scenario-file gdb-packets core-file)
selected=()
limit=(-max_total_time=60)
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) limit=(-runs="$2"); shift 2 ;;
    --time) limit=(-max_total_time="$2"); shift 2 ;;
    all) selected=("${all[@]}"); shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *)
      if [[ " ${all[*]} " == *" $1 "* ]]; then selected+=("$1"); shift
      else echo "fuzz.sh: unknown target or option '$1' (targets: ${all[*]})" >&2; exit 2; fi ;;
  esac
done
[ ${#selected[@]} -eq 0 ] && selected=("${all[@]}")

work=.build/fuzz
mkdir -p "$work"
echo "fuzz: building the targets (release, -sanitize=fuzzer,address)"
# SwiftPM's --sanitize=fuzzer instruments only the targets' own modules for coverage: every Swift
# module (the package's libraries included) is compiled with -sanitize=fuzzer, and C with its
# no-link form, so libFuzzer sees the parsers' edges and comparisons.
# The package is a path dependency here: SwiftPM may keep its cached build plan (and so its list
# of source files) for it, so a file added since the last fuzz build would be missed; plan afresh.
rm -f "$work/build/release.yaml" "$work/build/release/description.json"
swift build -c release --sanitize=fuzzer --sanitize=address --package-path Fuzz --scratch-path "$work/build" \
  -Xswiftc -sanitize=fuzzer -Xcc -fsanitize=fuzzer-no-link >"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log"; echo "fuzz: build failed"; exit 1; }
bin="$work/build/release"

seed() {   # seed TARGET DIR: the committed seeds (hex written as bytes) and the generated ones
  local target=$1 dir=$2
  mkdir -p "$dir"
  for f in Fuzz/seeds/"$target"/*; do
    [ -e "$f" ] || continue
    case "$f" in
      *.hex) perl -ne 's/#.*//; s/\s+//g; print pack("H*", $_)' "$f" >"$dir/seed-$(basename "$f" .hex)" ;;
      *) cp "$f" "$dir/seed-$(basename "$f")" ;;
    esac
  done
  case "$target" in
    scenario-file) for f in Scenarios/*.yaml; do cp "$f" "$dir/seed-$(basename "$f")"; done ;;
    elf-image)
      swift build --product rproc-sim >/dev/null
      for arch in cortex-m4 rv32; do
        .build/debug/rproc-sim load echo --arch "$arch" >/dev/null
        cp ".build/firmware/$arch/echo.elf" "$dir/seed-echo-$arch.elf"
      done ;;
  esac
}

failed=0
for target in "${selected[@]}"; do
  corpus="$work/corpus/$target"
  findings="$work/findings/$target"
  mkdir -p "$corpus" "$findings"
  seeds=$(mktemp -d)
  seed "$target" "$seeds"
  echo "fuzz: $target (${limit[*]})"
  set +e
  "$bin/fuzz-$target" "$corpus" "$seeds" "${limit[@]}" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$findings/" -print_final_stats=1 >"$work/$target.log" 2>&1
  status=$?
  set -e
  rm -rf "$seeds"
  runs=$(grep -E '^stat::number_of_executed_units:' "$work/$target.log" | awk '{ print $2 }' || true)
  speed=$(grep -E '^stat::average_exec_per_sec:' "$work/$target.log" | awk '{ print $2 }' || true)
  cov=$(grep -E '#[0-9]+.*cov: ' "$work/$target.log" | tail -1 | sed -E 's/.*cov: ([0-9]+).*/\1/' || true)
  if [ "$status" -ne 0 ]; then
    failed=1
    echo "fuzz: $target FAILED after ${runs:-?} runs — see $work/$target.log; input in $findings/"
    grep -E 'ERROR|Fatal|==ERROR|SUMMARY' "$work/$target.log" | head -5
  else
    echo "fuzz: $target: ${runs:-?} runs, ${speed:-?}/s, coverage ${cov:-?} edges, 0 crashes"
  fi
done
exit $failed
