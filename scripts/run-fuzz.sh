#!/usr/bin/env bash
# Runs every libFuzzer target (BUILD_DIR/bin/fuzz_*) for SECONDS each.
#
#   scripts/run-fuzz.sh BUILD_DIR SECONDS        (make fuzz FUZZ_SECONDS=N does the build first)
#
# Each target starts from a fresh copy of its seeds (tests/fuzz/corpus/<target>/, if present) in
# a temporary directory that is removed afterwards, so runs never modify the checked-in corpus.
# A crashing input is kept in BUILD_DIR/fuzz-artifacts/<target>/ for reproduction:
#   BUILD_DIR/bin/<target> BUILD_DIR/fuzz-artifacts/<target>/crash-...
# Targets run in parallel, one per CPU (FUZZ_JOBS=N to change it).
# Prints one line per target; exits non-zero if any target crashed or failed to run.
set -euo pipefail

if [[ $# -ne 2 || ! $2 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
build=$1
seconds=$2
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

shopt -s nullglob
targets=()
for exe in "$build"/bin/fuzz_*; do
  [[ -f $exe && -x $exe ]] && targets+=("$exe")
done
if ((${#targets[@]} == 0)); then
  echo "run-fuzz: no fuzz_* executables in $build/bin (configure and build with --preset fuzz)" >&2
  exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ipcx-fuzz.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# UBSan is compiled with -fno-sanitize-recover; these make any report abort with a stack.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

# Targets run side by side, one per CPU (FUZZ_JOBS, default nproc); each writes its report line
# to its own file, printed in the targets' order once all are done.
run_one() {
  local exe=$1 name corpus log artifacts seeds nseeds start rc elapsed execs per_sec rss ncorpus kept
  name=$(basename "$exe")
  corpus=$tmp/$name/corpus
  log=$tmp/$name/log
  artifacts=$build/fuzz-artifacts/$name
  mkdir -p "$corpus" "$artifacts"
  seeds=$root/tests/fuzz/corpus/$name
  [[ -d $seeds ]] && cp -R "$seeds"/. "$corpus"/
  nseeds=$(find "$corpus" -type f | wc -l)

  touch "$tmp/$name/started"
  start=$(date +%s.%N)
  # entropic_scale_per_exec_time: spend less of the time mutating the slow (megabyte) inputs.
  rc=0
  "$exe" -max_total_time="$seconds" -timeout=30 -print_final_stats=1 -entropic_scale_per_exec_time=1 \
    -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1 || rc=$?
  elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')

  execs=$(awk '/^stat::number_of_executed_units:/ { print $2 }' "$log" | tail -n 1)
  per_sec=$(awk '/^stat::average_exec_per_sec:/ { print $2 }' "$log" | tail -n 1)
  rss=$(awk '/^stat::peak_rss_mb:/ { print $2 }' "$log" | tail -n 1)
  ncorpus=$(find "$corpus" -type f | wc -l)
  if ((rc == 0)); then
    printf '%-22s ok     %10s execs in %5s s (%s/s), corpus %s -> %s, peak rss %s MB\n' \
      "$name" "${execs:-?}" "$elapsed" "${per_sec:-?}" "$nseeds" "$ncorpus" "${rss:-?}"
  else
    printf '%-22s FAILED (exit %s) after %s execs in %s s; log tail:\n' \
      "$name" "$rc" "${execs:-?}" "$elapsed"
    tail -n 40 "$log" | sed 's/^/    /'
    kept=$(find "$artifacts" -type f -newer "$tmp/$name/started")
    if [[ -n $kept ]]; then printf '    input kept: %s\n' $kept; fi
  fi
  return $rc
}

jobs=${FUZZ_JOBS:-$(nproc)}
running=0
for exe in "${targets[@]}"; do
  name=$(basename "$exe")
  mkdir -p "$tmp/$name"
  (if run_one "$exe" >"$tmp/$name/report"; then echo 0; else echo 1; fi >"$tmp/$name/rc") &
  running=$((running + 1))
  if ((running >= jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
done
wait

status=0
for exe in "${targets[@]}"; do
  name=$(basename "$exe")
  cat "$tmp/$name/report"
  [[ $(cat "$tmp/$name/rc" 2>/dev/null) == 0 ]] || status=1
done
exit $status
