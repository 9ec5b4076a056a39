#!/usr/bin/env bash
# Prepares, on the development machine, what a device call carries (a fresh checkout has
# neither): build-gpu/ (tinyllama and its test and bench binaries for sm_90, built here so
# no device time goes into building) and .carry/ (both are git-ignored):
#   .carry/data          the Llama 2 tokenizer and test data from ../shared/data
#   .carry/curve         the curve comparison's corpus (bench/curve_corpus.py)
#   .carry/httplib/lib   Debian 12's cpp-httplib, brotli and sentencepiece libraries, which
#                        the binaries link and the GPU machine lacks or has in another ABI
#                        (the scripts put this folder on LD_LIBRARY_PATH)
# Then packs the binaries into .carry/bin.tgz and prints the `carry` list for a call. Takes ~12 minutes on two cores from scratch (ccache
# makes a rebuild after small changes quick).
#   tools/gpu/make_carry.sh [TARGETS...]   (default: tinyllama tinyllama_tests
#          tinyllama_serve_tests tinyllama_fp8_gemm_bench tinyllama_serve_bench: every binary
#          gpu_round.sh's PREBUILT=1 asks for, else it builds them all on the GPU machine)
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${SHARED:-../shared}
targets=("$@")
[ ${#targets[@]} -gt 0 ] ||
  targets=(tinyllama tinyllama_tests tinyllama_serve_tests tinyllama_fp8_gemm_bench
    tinyllama_serve_bench)

[ -f "$SHARED/data/llama2-tokenizer.model" ] || {
  echo "no $SHARED/data/llama2-tokenizer.model (set SHARED to the folder holding data/)"; exit 1; }
mkdir -p .carry/httplib/lib
cp -r "$SHARED/data" .carry/
[ -f .carry/curve/prose.jsonl.zst ] || python3 bench/curve_corpus.py --out .carry/curve
for lib in libcpp-httplib.so.0.11 libbrotlicommon.so.1 libbrotlidec.so.1 libbrotlienc.so.1 \
  libsentencepiece.so.0 libsentencepiece_train.so.0; do
  cp -L "/usr/lib/x86_64-linux-gnu/$lib" .carry/httplib/lib/ ||
    { echo "missing /usr/lib/x86_64-linux-gnu/$lib: run scripts/setup.sh first"; exit 1; }
done

command -v ccache >/dev/null || apt-get install -y ccache >/dev/null 2>&1 || true
launcher=()
command -v ccache >/dev/null &&
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DTL_CUDA=ON -DTL_CUDA_ARCHS=90 \
  "${launcher[@]}" >/dev/null
started=$(mktemp)  # a source edited during the build can leave objects of both versions
CCACHE_BASEDIR=$PWD/.. cmake --build build-gpu -j "$(nproc)" --target "${targets[@]}"
# (2026-12-07: a header edited mid-build gave a test binary whose objects disagreed on a
# class's layout; it crashed on the GPU machine.) Refuse to pack such a build: touch the
# edited files and run this again, which rebuilds everything that includes them.
edited=$(find src tests bench tools CMakeLists.txt -newer "$started" -type f \
  \( -name '*.h' -o -name '*.cuh' -o -name '*.cpp' -o -name '*.cu' -o -name CMakeLists.txt \) | head -5)
rm -f "$started"
if [ -n "$edited" ]; then
  echo "edited during the build (not packed): $edited"
  echo "run: touch $edited && tools/gpu/make_carry.sh"
  exit 1
fi

# The binaries travel packed (gzip; ~3.4x smaller): the call's 64 MiB counts the tracked files
# too, and five sm_90 binaries alone are ~60 MB. The round scripts unpack .carry/bin.tgz into
# build-gpu/ first (tools/gpu/unpack_carry.sh).
tar -czf .carry/bin.tgz -C build-gpu "${targets[@]}"
carry=(.carry/data .carry/curve .carry/httplib .carry/bin.tgz)
du -shc "${carry[@]}" $(git ls-files) | tail -1 |
  sed 's/total/to send with the tracked files (the limit is 64 MiB)/'
printf 'carry: ['
sep=
for c in "${carry[@]}"; do printf '%s"%s"' "$sep" "$c"; sep=', '; done
printf ']\n'
