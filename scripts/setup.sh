#!/usr/bin/env bash
# Installs the Debian packages tinyllama needs, when missing. Safe to run repeatedly.
# --asan: also the clang toolchain of the sanitizer and fuzzing build (make test-asan / fuzz).
set -euo pipefail

packages=(
  build-essential cmake pkg-config git          # toolchain
  libsentencepiece-dev sentencepiece            # tokenizer (library and spm_* tools)
  nlohmann-json3-dev libcli11-dev               # config and command line
  libzstd-dev zlib1g-dev zstd     # compressed corpora and checksums
  libgtest-dev                                  # tests
  fortunes libpython3.11-stdlib                 # the demo corpus: prose and Python code
  python3                                       # the demo's held-out task; fixture scripts
  gnuplot-nox                                   # training reports
  libcpp-httplib-dev                            # tinyllama serve (HTTP)
)
if [ "${1:-}" = "--asan" ]; then
  packages=(
    clang-14 libclang-rt-14-dev   # clang with the ASAN/UBSan and libFuzzer runtimes
    libomp-14-dev                 # OpenMP for clang
    ccache                        # the sanitizer build is a second full build: cache it
  )
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
