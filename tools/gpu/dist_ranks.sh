# Sourced by tools/gpu/dist_check.sh and bench/dist_sweep.sh: N local ranks of one command with
# torchrun-style variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT).

PIDS=()
start_ranks() {  # start_ranks N LOGPREFIX cmd...  (background; PIDS, one per rank)
  local n=$1 prefix=$2; shift 2
  local port=$((20000 + RANDOM % 20000))
  PIDS=()
  for ((r = 0; r < n; r++)); do
    RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r LOCAL_WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      "$@" >"$prefix.rank$r.log" 2>&1 &
    PIDS+=($!)
  done
}
wait_ranks() {  # wait_ranks SECONDS: waits for PIDS; kills them all past the deadline; worst rc
  local deadline=$(( $(date +%s) + $1 )) rc=0
  for p in "${PIDS[@]}"; do
    while kill -0 "$p" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
    if kill -0 "$p" 2>/dev/null; then kill -9 "${PIDS[@]}" 2>/dev/null; rc=124; fi
    wait "$p"; local c=$?
    [ $rc -eq 0 ] && rc=$c
  done
  return $rc
}
