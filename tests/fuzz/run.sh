#!/usr/bin/env bash
# Runs the libFuzzer targets of a sanitizer build (make build-asan), each for SECONDS on a
# scratch copy of its committed corpus (tests/fuzz/corpus/<name>), so runs never modify the
# repository. Findings (crash-*, leak-*, timeout-*, oom-*) land in BUILD/fuzz/<name>/findings.
#   tests/fuzz/run.sh BUILD SECONDS [NAME...]       NAME: tlck, parquet, ... (default: all)
#   FUZZ_JOBS=N   targets run N at a time (default 1)
#   tests/fuzz/run.sh --dump-seeds BUILD            rewrite the seeds that targets make themselves
# A finding is a crash, a sanitizer report, an input slower than 20 s (-timeout) or a
# run over 2 GiB (-rss_limit_mb, -malloc_limit_mb); a thrown tl::Error is the right answer.
# Exit status: 0 when no target found anything.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if [ "${1:-}" = "--dump-seeds" ]; then
  build="$2"
  TL_FUZZ_DUMP_SEED="$here/corpus/sharded_meta/valid" "$build/fuzz_sharded_meta" -runs=0 >/dev/null 2>&1
  TL_FUZZ_DUMP_SEED="$here/corpus/manifest/prepared" "$build/fuzz_manifest" -runs=0 >/dev/null 2>&1
  ls -l "$here/corpus/sharded_meta/valid" "$here/corpus/manifest/prepared"
  exit 0
fi

build="${1:?usage: run.sh BUILD SECONDS [NAME...]}"
seconds="${2:?usage: run.sh BUILD SECONDS [NAME...]}"
shift 2
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for f in "$here"/fuzz_*.cpp; do n="$(basename "$f" .cpp)"; names+=("${n#fuzz_}"); done
fi
jobs="${FUZZ_JOBS:-1}"
out="$build/fuzz"
mkdir -p "$out"

run_one() {
  local name="$1" dir="$out/$1"
  local bin="$build/fuzz_$name"
  rm -rf "$dir/corpus" "$dir/findings"
  mkdir -p "$dir/corpus" "$dir/findings"
  if [ ! -x "$bin" ]; then
    echo "fuzz_$name: not built ($bin)" > "$dir/summary"
    return 1
  fi
  cp -r "$here/corpus/$name/." "$dir/corpus/" 2>/dev/null
  local start=$SECONDS rc=0
  ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}" \
    "$bin" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$dir/findings/" "$dir/corpus" > "$dir/log" 2>&1 || rc=$?
  local execs corpus findings
  execs="$(grep -o 'stat::number_of_executed_units: [0-9]*' "$dir/log" | awk '{print $2}')"
  corpus="$(ls "$dir/corpus" | wc -l)"
  findings="$(ls "$dir/findings" | wc -l)"
  printf 'fuzz_%-14s %9s execs in %3ds, corpus %4d inputs, findings %d%s\n' "$name" "${execs:-?}" \
    $((SECONDS - start)) "$corpus" "$findings" "$([ $rc -ne 0 ] && echo " (exit $rc; log: $dir/log)")" \
    > "$dir/summary"
  [ $rc -eq 0 ] && [ "$findings" -eq 0 ]
}

failed=0
pids=()
for name in "${names[@]}"; do
  run_one "$name" &
  pids+=("$!:$name")
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
done
for p in "${pids[@]}"; do
  pid="${p%%:*}" name="${p#*:}"
  wait "$pid" 2>/dev/null
  cat "$out/$name/summary"
  if ! grep -q ' findings 0$' "$out/$name/summary"; then
    failed=1
    echo "---- fuzz_$name: the end of $out/$name/log ----"
    grep -v '^#[0-9]' "$out/$name/log" | tail -40
  fi
done
exit $failed
