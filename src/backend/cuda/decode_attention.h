// attention_decode on the GPU (decode_attention.cu): RoPE, KV-cache append and
// flash-decoding attention (keys split into chunks, one block per query row x KV head x
// chunk, partial softmax results merged in a fixed order), one launch per decode step.
// Semantics as backend.h.
#pragma once
#include <cuda_runtime.h>

#include "backend/backend.h"
#include "backend/cuda/memory.h"

namespace tl::gpu {

// out[B,Tn,H*D], qkv[B,Tn,(H+2K)*D] (read only), k_cache, v_cache[B,Tmax,K*D]: bf16;
// cos, sin[Tmax',D/2]: f32; pos[B]: i32. Any even head dim D. sm_count sizes the key
// splits and smem_optin (the device's opt-in shared memory a block) bounds a block's width;
// with more than one and no thread block clusters (the default; clusters need
// TL_DECODE_ATTN_CLUSTER=1 and sm_90), `scratch` holds their partial results and `counters`
// (kept zero between calls) how many of a row's splits are done.
void attention_decode(Tensor out, Tensor qkv, Tensor k_cache, Tensor v_cache, Tensor cos,
                      Tensor sin, Tensor pos, int kv_len, int n_head, int n_kv_head, int sm_count,
                      size_t smem_optin, Scratch& scratch, Scratch& counters, cudaStream_t stream);

}  // namespace tl::gpu
