// decode_layers on the GPU (decode_layers.cu): every layer of a one-row decode step in one
// persistent launch, with the same bits as the ops it stands for. Semantics as backend.h.
#pragma once
#include <cuda_runtime.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/memory.h"

namespace tl::gpu {

constexpr int kMaxDecodeLayers = 128;  // the layers' pointers travel as a kernel parameter

// Launches the step and returns true, or returns false having done nothing (off: set
// TL_DECODE_LAYERS=1; before sm_90; a shape or alignment the kernel does not take).
// `parts` holds attention's per-split results, `counters` (kept zero between calls) the
// blocks done with each phase.
bool decode_layers(const Backend::DecodeLayers& d, const CudaContext& ctx, Scratch& parts,
                   Scratch& counters, cudaStream_t stream);

}  // namespace tl::gpu
