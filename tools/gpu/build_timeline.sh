#!/usr/bin/env bash
# Builds tools/gpu/kernel_timeline.cpp into .carry/timeline/libtl_timeline.so (git-ignored)
# beside a copy of the toolkit's CUPTI library it links, so that a device call can carry both
# (".carry/timeline") and preload it: see bench/decode_timeline.sh.
#   tools/gpu/build_timeline.sh      (repository root, development machine; CUDA=/usr/local/cuda)
set -euo pipefail
cd "$(dirname "$0")/../.."
CUDA=${CUDA:-/usr/local/cuda}
cupti=$(ls "$CUDA"/lib/libcupti.so.[0-9]* "$CUDA"/lib64/libcupti.so.[0-9]* \
  "$CUDA"/extras/CUPTI/lib64/libcupti.so.[0-9]* 2>/dev/null | head -1 || true)
[ -n "$cupti" ] || { echo "no libcupti under $CUDA"; exit 1; }
mkdir -p .carry/timeline
cp -L "$cupti" .carry/timeline/
g++ -std=c++17 -O2 -Wall -Wextra -shared -fPIC -I"$CUDA/include" tools/gpu/kernel_timeline.cpp \
  -L.carry/timeline -l:"$(basename "$cupti")" -Wl,-rpath,'$ORIGIN' -o .carry/timeline/libtl_timeline.so
ls -la .carry/timeline
