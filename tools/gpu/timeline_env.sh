# Sourced by bench/decode_timeline.sh and bench/step_timeline.sh (GPU machine, repository
# root): unpacks the carried binaries, sets OUT (default /tmp/$1) and BUILD (build-gpu), puts
# the carried libraries on the path, checks that tools/gpu/build_timeline.sh's CUPTI library
# was carried (TIMELINE: its path, for LD_PRELOAD) and prints the card, clock and power.
bash tools/gpu/unpack_carry.sh
OUT=${OUT:-/tmp/$1}
BUILD=${BUILD:-build-gpu}
TIMELINE=$PWD/.carry/timeline/libtl_timeline.so
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.carry/httplib/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
[ -f "$TIMELINE" ] || { echo "no .carry/timeline (tools/gpu/build_timeline.sh)"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader
