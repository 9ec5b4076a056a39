#!/usr/bin/env bash
# Why `tinyllama serve --device cuda` dies on the GPU machine (#13): the carried binary's
# libraries, the server under gdb where there is one (else its log), a 1.1B and a small model.
# Run from the repository root on the GPU machine with build-gpu/ and .carry/ carried.
set -uo pipefail
OUT=${OUT:-/tmp/serve_probe}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$PWD/.carry/httplib/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
B=build-gpu/tinyllama T=.carry/data/llama2-tokenizer.model
ldd "$B" | grep -E "ssl|crypto|brotli|httplib|sentencepiece|not found"
"$B" init --preset tinyllama-1.1b --set n_layers=2 --out /tmp/small.tlck --device cuda >/dev/null
probe() {  # probe NAME DEVICE: start the server, ask /health and one completion, stop it
  local name=$1 dev=$2 port=$3
  if command -v gdb >/dev/null; then
    timeout 90 gdb -q -batch -ex run -ex bt --args "$B" serve --checkpoint /tmp/small.tlck \
      --tokenizer "$T" --device "$dev" --port "$port" --max-batch 64 --max-len 512 \
      >"$OUT/$name.log" 2>&1 &
  else
    timeout 90 "$B" serve --checkpoint /tmp/small.tlck --tokenizer "$T" --device "$dev" \
      --port "$port" --max-batch 64 --max-len 512 >"$OUT/$name.log" 2>&1 &
  fi
  for _ in $(seq 40); do curl -sf "localhost:$port/health" >/dev/null 2>&1 && break; sleep 1; done
  echo "== $name: health $(curl -s "localhost:$port/health")"
  curl -s "localhost:$port/v1/completions" -d '{"prompt": "Hello", "max_tokens": 8}' | head -c 300; echo
  pkill -TERM -f "port $port" 2>/dev/null; sleep 2
  tail -25 "$OUT/$name.log"
}
probe cpu cpu 8401
probe cuda cuda 8402
pkill -KILL -f "tinyllama serve" 2>/dev/null; pkill -KILL gdb 2>/dev/null; exit 0
