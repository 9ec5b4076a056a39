#!/usr/bin/env bash
# On the GPU machine: unpacks the binaries that tools/gpu/make_carry.sh packed into
# .carry/bin.tgz (into build-gpu/, newer than any stale copy) and links the repository at
# /work/main, the path the test binary was built under (its fixtures are found from there).
# Sourced or run by the round scripts; does nothing when there is no .carry/bin.tgz.
#   tools/gpu/unpack_carry.sh      (repository root)
if [ -f .carry/bin.tgz ]; then
  mkdir -p build-gpu && tar -xzmf .carry/bin.tgz -C build-gpu &&
    echo "unpacked $(tar -tzf .carry/bin.tgz | tr '\n' ' ')into build-gpu/"
fi
if [ ! -e /work/main ] && [ "$PWD" != /work/main ]; then
  mkdir -p /work 2>/dev/null && ln -sfn "$PWD" /work/main 2>/dev/null || true
fi
