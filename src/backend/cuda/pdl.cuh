// Programmatic dependent launch (Hopper): a kernel launched with launch_pdl may start while
// the kernel before it in the stream is still running, so its launch and whatever it reads
// that no earlier kernel writes (weights, old KV-cache rows) overlap that kernel's tail. Decode
// steps are ~110 kernels of a few microseconds each, where those gaps are a third of the time.
// The rules, for a kernel launched this way:
// - pdl_wait() before the first read of anything an earlier kernel of the step writes (it
//   returns once the previous kernel has finished and its writes are visible; that kernel
//   waited on its own predecessor the same way, so everything before is done too);
// - no writes before pdl_wait() (an earlier kernel may still read the old values);
// - pdl_launch_dependents() lets the next kernel start once every block of this one has
//   called it or exited; calling it early is safe because the next kernel waits anyway.
// On by default on sm_90 or newer (TL_PDL=0 makes launch_pdl a plain launch; both calls then
// do nothing). Measured on an H100 with the decode kernels replayed as a CUDA graph
// (bench/RESULTS.md, 2026-12-06): with decode_linear in waves of blocks it cost 7-14% a token
// at batch 1; with decode_linear as one wave whose first loads precede pdl_wait() it gains
// 7% (805.3 -> 862.8 tokens/s at 19:24 UTC), and the decode tests pass with it. Recorded into
// a CUDA graph the dependency stays programmatic.
#pragma once
#include <cuda_runtime.h>

#include <utility>

#include "backend/cuda/cuda_common.h"

namespace tl::gpu {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// launch_pdl with thread block clusters of `cluster` blocks (sm_90; the grid a multiple of it).
template <class... Params, class... Args>
void launch_pdl_clusters(void (*kernel)(Params...), dim3 grid, dim3 cluster, dim3 block,
                         size_t smem, cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attr[2];
  int n = 0;
  if (pdl_enabled()) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster.x * cluster.y * cluster.z > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = cluster.x;
    attr[n].val.clusterDim.y = cluster.y;
    attr[n++].val.clusterDim.z = cluster.z;
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = unsigned(n);
  TL_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

template <class... Params, class... Args>
void launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                Args&&... args) {
  launch_pdl_clusters(kernel, grid, dim3(1, 1, 1), block, smem, stream,
                      std::forward<Args>(args)...);
}

}  // namespace tl::gpu
