#!/usr/bin/env bash
# One GPU-machine call of named steps, in the order given, with the SM clock and power logged
# beside every timed run. Steps:
#   golden            tools/fixtures/make_eval_golden.py (eval's oracle; CPU) -> eval_golden.tar
#   tokcheck          exported tokenizer.json through transformers' AutoTokenizer (#14)
#   evalbench         bench/eval_bench.sh: eval --task hellaswag vs a transformers loop (#12)
#   evaltests         build tinyllama_tests and run Eval* on the GPU
#   tests:FILTER      tinyllama_tests with that gtest filter (and tinyllama_serve_tests' *Cuda*)
#   genbench          bench/generate_bench.sh: generate vs transformers (static cache, compiled)
#   servebench        bench/serve_bench.sh: scheduler decode tokens/s (#13)
#   fp8gemm           FP8 vs bf16 on the step's linear GEMMs (#16)
#   ours | ours@VAR=VAL[,VAR=VAL]   tinyllama bench, 1.1B, micro-batch 8 x 2048 (with levers;
#                     items --flag=value are bench options: ours@--precision=fp8)
#   pt:SDPA:LOSS[:flags]            bench/pytorch_reference.py in that configuration (#15)
#   e.g. bench/gpu_round.sh golden tokcheck ours pt:cudnn:compiled pt:flash:compiled
# A step whose usual duration no longer fits before DEADLINE (epoch seconds; default: start +
# BUDGET seconds, 560) is skipped and listed, so the call returns with what it has.
# Run from the repository root. Results go to $OUT (default build/gpu_round): logs.tar holds
# every log, every JSON and smi.csv (the script packs and removes them: don't tar $OUT again);
# summary.txt the bench table with clock and power.
set -uo pipefail
bash tools/gpu/unpack_carry.sh  # the binaries make_carry.sh packed, if carried
OUT=${OUT:-build/gpu_round}
BUILD=${BUILD:-build}
DATA=${DATA:-.carry/data}
mkdir -p "$OUT"
status=0
DEADLINE=${DEADLINE:-$(( $(date +%s) + ${BUDGET:-560} ))}
skipped=""
fits() {  # fits SECONDS STEP: true when SECONDS remain before the deadline
  if (( $(date +%s) + $1 <= DEADLINE )); then return 0; fi
  echo "== skipped $2 (needs ~$1 s, $(( DEADLINE - $(date +%s) )) s left)"; skipped="$skipped $2"; return 1
}

{
  date -u +%FT%TZ
  git rev-parse --short HEAD 2>/dev/null
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv,noheader
  nvcc --version | tail -n 1
  python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__, "cudnn", torch.backends.cudnn.version())'
} >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,utilization.gpu,temperature.gpu \
  --format=csv,noheader,nounits -lms 250 >"$OUT/smi.csv" 2>/dev/null &
smi_pid=$!
mark() { echo "$1 $(date +%s.%N)" >>"$OUT/windows.txt"; }

golden_pid=""
if [[ " $* " == *" golden "* ]]; then  # CPU work: beside the build, not beside a timed run
  echo "== eval golden (transformers, float64), beside the build"
  (PYTHONUNBUFFERED=1 python3 tools/fixtures/make_eval_golden.py --tokenizer "$DATA/llama2-tokenizer.model" \
     --tasks tests/fixtures/eval --out "$OUT/eval_golden" >"$OUT/golden.log" 2>&1;
   echo $? >"$OUT/golden.rc") &
  golden_pid=$!
fi

# cpp-httplib for the HTTP server where pkg-config has none: Debian's package unpacked into
# .carry/httplib (headers, libcpp-httplib.so and the brotli libraries it needs at run time).
# Carried binaries (PREBUILT) need only the libraries in .carry/httplib/lib.
HTTPLIB_ROOT=""
[ -f .carry/httplib/include/httplib.h ] && HTTPLIB_ROOT=$PWD/.carry/httplib
[ -d .carry/httplib/lib ] && export LD_LIBRARY_PATH="$PWD/.carry/httplib/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

echo "== build"
t0=$(date +%s)
targets="tinyllama tinyllama_fp8_gemm_bench"
# The test binaries too when they will run, so no compile overlaps a timed step.
[[ " $* " == *" evaltests "* || " $* " == *" tests:"* ]] && targets="$targets tinyllama_tests tinyllama_serve_tests"
[[ " $* " == *" servebench "* ]] && targets="$targets tinyllama_serve_bench"
build() {
  cmake -S . -B "$BUILD" -DTL_CUDA=ON -DTL_CUDA_ARCHS=90 -DCMAKE_BUILD_TYPE=Release \
    ${HTTPLIB_ROOT:+-DTL_HTTPLIB_ROOT=$HTTPLIB_ROOT} >>"$OUT/build.log" 2>&1 &&
    cmake --build "$BUILD" -j "$(nproc)" --target $targets >>"$OUT/build.log" 2>&1
}
# PREBUILT=1: binaries built elsewhere for sm_90 (same CUDA) and carried in $BUILD are used
# as they are when every target is there and tinyllama runs here; else everything is built.
prebuilt() {
  [ -n "${PREBUILT:-}" ] || return 1
  local t; for t in $targets; do [ -x "$BUILD/$t" ] || return 1; done
  "$BUILD/tinyllama" --version >>"$OUT/build.log" 2>&1
}
if prebuilt; then echo "using the carried binaries in $BUILD"; else
build || { [ -n "$HTTPLIB_ROOT" ] && echo "build with the carried cpp-httplib failed; again without" &&
           (grep -E "error" "$OUT/build.log" | head -5 || true) && HTTPLIB_ROOT="" &&
           BUILD="$BUILD-nohttp" && build; } ||
  { echo "build failed"; grep -E "error" "$OUT/build.log" | head -40; kill $smi_pid
    [ -n "$golden_pid" ] && wait $golden_pid && (cd "$OUT" && tar -cf eval_golden.tar eval_golden)
    exit 1; }
fi
echo "built in $(( $(date +%s) - t0 )) s"

# gpu_tests LOG FILTER: tinyllama_tests with FILTER (at most 300 s), then tinyllama_serve_tests'
# *Cuda* (both built up front), into $OUT/LOG; prints the verdicts and the speed lines. A test
# that kills the binary (a signal: a crash, not a failure) is named, run alone under gdb for a
# backtrace when gdb is there (into LOG.crash), and the rest of FILTER runs without it.
gpu_tests() {
  local filter=$2 rc crashed
  for _ in 1 2 3; do
    local left=$(( DEADLINE - $(date +%s) ))
    (( left > 300 )) && left=300
    TL_SHARED_DIR="$(dirname "$DATA")" timeout $left stdbuf -oL "$BUILD/tinyllama_tests" \
      --gtest_filter="$filter" --gtest_color=no >>"$OUT/$1" 2>&1
    rc=$?
    (( rc == 0 )) && break
    status=1
    (( rc > 128 && rc != 137 )) || break  # a failure or the time limit: nothing to skip
    crashed=$(grep -E '^\[ RUN      \]' "$OUT/$1" | tail -n 1 | awk '{print $4}')
    [ -n "$crashed" ] || break
    echo "== $crashed killed the test binary (exit $rc)" | tee -a "$OUT/$1"
    if command -v gdb >/dev/null; then
      TL_SHARED_DIR="$(dirname "$DATA")" timeout 120 gdb -batch -ex run -ex bt \
        --args "$BUILD/tinyllama_tests" --gtest_filter="$crashed" >"$OUT/$1.crash" 2>&1
      grep -E '^#[0-9]+ ' "$OUT/$1.crash" | head -12
    fi
    [[ $filter == *-* ]] && filter="$filter:$crashed" || filter="$filter-$crashed"
  done
  TL_SHARED_DIR="$(dirname "$DATA")" "$BUILD/tinyllama_serve_tests" --gtest_filter='*Cuda*' \
    --gtest_color=no >>"$OUT/$1" 2>&1 || status=1
  grep -E "^\[  (FAILED|PASSED|SKIPPED) |tokens/s|tests ran|killed the test binary" "$OUT/$1" | tail -24
}

for step in "$@"; do
  case "$step" in
    golden)
      wait $golden_pid
      [ "$(cat "$OUT/golden.rc" 2>/dev/null)" = 0 ] || status=1
      tail -3 "$OUT/golden.log"
      (cd "$OUT" && tar -cf eval_golden.tar eval_golden && rm -rf eval_golden golden.rc)
      ;;
    evalbench)
      fits 240 evalbench || continue
      echo "== eval bench (HellaSwag shape, 1.1B)"
      mark "evalbench_start"
      BUILD="$BUILD" WORK=/tmp/eval_bench timeout 400 bash bench/eval_bench.sh "$DATA/llama2-tokenizer.model" \
        >"$OUT/evalbench.log" 2>&1 || status=1
      mark "evalbench_end"
      tail -15 "$OUT/evalbench.log"
      ;;
    evaltests)
      fits 200 evaltests || continue
      echo "== GPU tests: eval, FP8, backend-ops table, Cuda*, serve"
      if [ -f "$OUT/eval_golden.tar" ]; then  # this call's golden, so EvalGolden.* run against it
        tar -xf "$OUT/eval_golden.tar" -C /tmp && cp -r /tmp/eval_golden/golden.json /tmp/eval_golden/model \
          tests/fixtures/eval/
      fi
      gpu_tests evaltests.log 'Eval*:Fp8*:Hf*Tokenizer*:BackendOps*:*BackendOpsAttention*:Cuda*'
      ;;
    tests:*)
      fits 60 "$step" || continue
      echo "== GPU tests: ${step#tests:}, serve *Cuda*"
      gpu_tests tests.log "${step#tests:}"
      ;;
    genbench)
      fits 240 genbench || continue
      echo "== generate vs transformers generate (static cache, compiled)"
      mark "genbench_start"
      BUILD="$BUILD" WORK=/tmp/gen_bench timeout 420 bash bench/generate_bench.sh --batches 1 32 \
        --new 256 >"$OUT/genbench.log" 2>&1 || status=1
      mark "genbench_end"
      tail -12 "$OUT/genbench.log"
      ;;
    servebench)
      fits 150 servebench || continue
      echo "== serve bench (scheduler decode, 1.1B)"
      mark "servebench_start"
      OUT=/tmp/serve_bench BUILD="$BUILD" TOKENIZER="$DATA/llama2-tokenizer.model" timeout 240 \
        bash bench/serve_bench.sh >"$OUT/servebench.log" 2>&1 || status=1
      mark "servebench_end"
      for f in /tmp/serve_bench/*.json /tmp/serve_bench/server.log; do
        [ -f "$f" ] && cp "$f" "$OUT/serve_$(basename "$f")"
      done
      tail -22 "$OUT/servebench.log"
      ;;
    tokcheck)
      fits 60 tokcheck || continue
      echo "== tokenizer.json through transformers' AutoTokenizer (#14)"
      python3 tools/gpu/hf_tokenizer_check.py --binary "$BUILD/tinyllama" \
        --tokenizer "$DATA/llama2-tokenizer.model" --data "$DATA" 2>&1 | tee "$OUT/tokcheck.log" | tail -8
      [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
      ;;
    fp8gemm)
      fits 90 fp8gemm || continue
      echo "== FP8 vs bf16 GEMMs (issue #16)"
      mark "fp8gemm_start"
      # cuBLASLt's own errors and hints say why an FP8 combination has no algorithm.
      CUBLASLT_LOG_MASK=7 CUBLASLT_LOG_FILE="$OUT/cublaslt_fp8.log" \
        timeout 180 "$BUILD/tinyllama_fp8_gemm_bench" >"$OUT/fp8gemm.log" 2>&1 || status=1
      mark "fp8gemm_end"
      cat "$OUT/fp8gemm.log"
      ;;
    ours|ours@*)
      # ours@VAR=VALUE[,VAR=VALUE]: the same bench with those environment variables (levers).
      fits 90 "$step" || continue
      envs=""; name=ours
      if [[ "$step" == ours@* ]]; then envs=${step#ours@}; name="ours_$(echo "$envs" | tr -c 'A-Za-z0-9\n' '_')"; fi
      echo "== tinyllama bench ${envs:+($envs)}"
      mark "${name}_start"
      vars=() flags=()  # --flag=value items are bench options (ours@--precision=fp8)
      for item in ${envs//,/ }; do [[ $item == --* ]] && flags+=("$item") || vars+=("$item"); done
      env "${vars[@]}" timeout 240 "$BUILD/tinyllama" bench --preset tinyllama-1.1b --micro-batch 8 \
        --steps 10 "${flags[@]}" --json "$OUT/$name.json" >"$OUT/$name.log" 2>&1 || status=1
      mark "${name}_end"
      tail -4 "$OUT/$name.log"
      ;;
    pt:*)
      fits 200 "$step" || continue
      IFS=: read -r _ sdpa loss extra <<<"$step"
      x=${extra//[^a-z0-9]/}; name="pt_${sdpa}_${loss}${x:+_$x}"
      echo "== pytorch reference: sdpa $sdpa, loss $loss ${extra}"
      mark "${name}_start"
      PYTHONUNBUFFERED=1 timeout 420 python3 bench/pytorch_reference.py --micro-batch 8 --steps 10 \
        --sdpa "$sdpa" --loss "$loss" $extra --json "$OUT/$name.json" >"$OUT/$name.log" 2>&1 || status=1
      mark "${name}_end"
      tail -3 "$OUT/$name.log"
      ;;
    *) echo "unknown step $step"; status=2 ;;
  esac
done
kill $smi_pid 2>/dev/null
[ -n "$skipped" ] && echo "skipped for time:$skipped"

# Clock and power while the GPU was busy (utilization >= 50%) inside each run's window.
python3 - "$OUT" <<'EOF' | tee "$OUT/summary.txt"
import datetime, json, os, sys
out = sys.argv[1]
rows = []
for line in open(os.path.join(out, "smi.csv")):
    p = [x.strip() for x in line.split(",")]
    try:
        t = datetime.datetime.strptime(p[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
        rows.append((t, float(p[1]), float(p[2]), float(p[3])))
    except (ValueError, IndexError):
        pass
marks = {}
if os.path.exists(os.path.join(out, "windows.txt")):
    for line in open(os.path.join(out, "windows.txt")):
        k, v = line.split()
        marks[k] = float(v)
print(f"{'run':28s} {'tokens/s':>10s} {'MFU':>6s} {'peak GiB':>9s} {'SM MHz':>7s} {'W':>6s}  notes")
for k in [k[:-6] for k in marks if k.endswith("_start")]:
    busy = [r for r in rows if marks[k + "_start"] <= r[0] <= marks.get(k + "_end", 1e20) and r[3] >= 50]
    clk = sorted(r[1] for r in busy)
    mhz = clk[len(clk) // 2] if clk else float("nan")
    watts = sum(r[2] for r in busy) / len(busy) if busy else float("nan")
    path = os.path.join(out, k + ".json")
    if not os.path.exists(path):  # a step that reports in its log: clock and power still count
        print(f"{k:28s} {'(log)':>10s} {'':>6s} {'':>9s} {mhz:7.0f} {watts:6.0f}"); continue
    j = json.load(open(path))
    tok = j.get("tokens_per_s", j.get("tokens_per_second", 0))
    mfu = j.get("mfu", 0)
    peak = j.get("peak_memory_bytes", j.get("peak_device_bytes", 0)) / 2**30
    notes = "; ".join(j.get("attention_kernels", []))[:160]
    print(f"{k:28s} {tok:10.0f} {100*mfu:5.1f}% {peak:9.1f} {mhz:7.0f} {watts:6.0f}  {notes}")
EOF
(cd "$OUT" && tar -cf logs.tar --remove-files -- *.log *.json smi.csv windows.txt 2>/dev/null)
exit $status
