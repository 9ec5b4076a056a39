// Token embedding: row gather forward; deterministic scatter-add backward (sort the token
// ids, then each distinct token sums its rows in position order; no atomics).
#include <cub/device/device_radix_sort.cuh>

#include "backend/cuda/checks.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/vec.cuh"

namespace tl::gpu {

// ---- kernels ----

// out[N,C] = table[tokens[n]]; thread = one W-wide slice of one row. Ids outside [0,V)
// (the model rejects them on the host) give zeros rather than a stray read.
template <int W>
__global__ void embedding_forward_kernel(bf16* out, const bf16* table, const int32_t* tokens,
                                         int64_t N, int C, int V) {
  const int nv = C / W;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= N * nv) return;
  const int64_t n = idx / nv;
  const int c = int(idx % nv) * W;
  const int32_t tok = tokens[n];
  Vec<bf16, W> v;
  if (tok >= 0 && tok < V) {
    v = load_vec<W>(table + int64_t(tok) * C + c);
  } else {
#pragma unroll
    for (int k = 0; k < W; ++k) v.v[k] = __float2bfloat16_rn(0.0f);
  }
  store_vec<W>(out + n * C + c, v);
}

// keys[n] = tokens[n], or V for ids outside [0,V) (sorted last, then skipped); rows[n] = n.
__global__ void embedding_keys_kernel(int32_t* keys, int32_t* rows, const int32_t* tokens,
                                      int64_t N, int V) {
  const int64_t n = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n >= N) return;
  const int32_t tok = tokens[n];
  keys[n] = (tok >= 0 && tok < V) ? tok : V;
  rows[n] = int32_t(n);
}

// Block i looks at sorted position i; only the first position of each run of equal ids
// works: it sums dout over the run's rows (ascending, as the sort is stable) and adds the
// sum to dtable[id]. Threads split the row's W-wide slices.
template <int W>
__global__ void embedding_backward_kernel(float* dtable, const bf16* dout, const int32_t* keys,
                                          const int32_t* rows, int64_t N, int C, int V) {
  const int64_t i = blockIdx.x;
  const int32_t key = keys[i];
  if (key >= V || (i > 0 && keys[i - 1] == key)) return;
  int64_t end = i + 1;
  while (end < N && keys[end] == key) ++end;
  float* drow = dtable + int64_t(key) * C;
  for (int c = threadIdx.x * W; c < C; c += blockDim.x * W) {
    float acc[W] = {};
#pragma unroll 4
    for (int64_t j = i; j < end; ++j) {  // unrolled: several rows' loads in flight
      const Vec<bf16, W> d = load_vec<W>(dout + int64_t(rows[j]) * C + c);
#pragma unroll
      for (int k = 0; k < W; ++k) acc[k] += to_f32(d.v[k]);
    }
    Vec<float, W> t = load_vec<W>(drow + c);
#pragma unroll
    for (int k = 0; k < W; ++k) t.v[k] += acc[k];
    store_vec<W>(drow + c, t);
  }
}

// ---- launchers ----

static void check_embedding(const char* op, const char* rows_name, const Tensor& rows,
                            const Tensor& table, DType table_dtype, const Tensor& tokens) {
  check_cuda(op, table_dtype == DType::F32 ? "dtable" : "table", table, table_dtype);
  TL_CHECK(table.ndim() == 2, op, ": table must be [V, C], got ", table.str());
  check_cuda(op, rows_name, rows, DType::BF16);
  check_rows(op, rows_name, rows);
  check_shape(op, rows_name, rows, with_last(rows.shape, table.dim(1)));
  check_cuda(op, "tokens", tokens, DType::I32);
  check_shape(op, "tokens", tokens, leading(rows.shape));
  check_int_range(op, "C", table.dim(1));
  check_int_range(op, "V", table.dim(0));
  check_int_range(op, "N", tokens.numel());
}

void embedding_forward(Tensor out, Tensor table, Tensor tokens, cudaStream_t stream) {
  const char* op = "embedding_forward";
  check_embedding(op, "out", out, table, DType::BF16, tokens);
  const int64_t N = tokens.numel();
  const int C = int(table.dim(1)), V = int(table.dim(0));
  if (N == 0 || C == 0) return;
  constexpr int kThreads = 256;
  if (C % 8 == 0 && aligned16(out.data) && aligned16(table.data)) {
    embedding_forward_kernel<8><<<unsigned(ceil_div(N * (C / 8), kThreads)), kThreads, 0, stream>>>(
        out.ptr<bf16>(), table.ptr<bf16>(), tokens.ptr<int32_t>(), N, C, V);
  } else {
    embedding_forward_kernel<1><<<unsigned(ceil_div(N * C, kThreads)), kThreads, 0, stream>>>(
        out.ptr<bf16>(), table.ptr<bf16>(), tokens.ptr<int32_t>(), N, C, V);
  }
  TL_CUDA_LAUNCH_CHECK();
}

void embedding_backward(Tensor dtable, Tensor dout, Tensor tokens, Scratch& scratch,
                        cudaStream_t stream) {
  const char* op = "embedding_backward";
  check_embedding(op, "dout", dout, dtable, DType::F32, tokens);
  const int64_t N = tokens.numel();
  const int C = int(dtable.dim(1)), V = int(dtable.dim(0));
  if (N == 0 || C == 0) return;

  // Scratch: keys and rows before and after the sort, then cub's temporary storage.
  int end_bit = 1;  // bits of the sort key: enough for V itself (the "invalid" key)
  while (end_bit < 31 && (int64_t(1) << end_bit) <= V) ++end_bit;
  size_t sort_bytes = 0;
  TL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, (const int32_t*)nullptr,
                                                (int32_t*)nullptr, (const int32_t*)nullptr,
                                                (int32_t*)nullptr, N, 0, end_bit, stream));
  const size_t ids_bytes = size_t(N) * 4 * 4;
  char* base = static_cast<char*>(scratch.get(ids_bytes + sort_bytes + 256, stream));
  int32_t* keys_in = reinterpret_cast<int32_t*>(base);
  int32_t* keys = keys_in + N;
  int32_t* rows_in = keys + N;
  int32_t* rows = rows_in + N;
  void* sort_tmp = base + (ids_bytes + 255) / 256 * 256;

  constexpr int kThreads = 256;
  embedding_keys_kernel<<<unsigned(ceil_div(N, kThreads)), kThreads, 0, stream>>>(
      keys_in, rows_in, tokens.ptr<int32_t>(), N, V);
  TL_CUDA_LAUNCH_CHECK();
  TL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(sort_tmp, sort_bytes, keys_in, keys, rows_in, rows,
                                                N, 0, end_bit, stream));
  const bool vec = C % 8 == 0 && aligned16(dout.data) && aligned16(dtable.data);
  const int W = vec ? 8 : 1;
  const int threads = int(std::min<int64_t>(256, ceil_div(ceil_div(C, W), kWarp) * kWarp));
  if (vec) {
    embedding_backward_kernel<8><<<unsigned(N), threads, 0, stream>>>(
        dtable.ptr<float>(), dout.ptr<bf16>(), keys, rows, N, C, V);
  } else {
    embedding_backward_kernel<1><<<unsigned(N), threads, 0, stream>>>(
        dtable.ptr<float>(), dout.ptr<bf16>(), keys, rows, N, C, V);
  }
  TL_CUDA_LAUNCH_CHECK();
}

}  // namespace tl::gpu
