// Row-wise layer kernels: RMSNorm (optionally fused with the residual add), residual add,
// SiLU gating, fp32 -> fp16 for the GEMM inputs, and RoPE fused with the KV-cache write.
// The per-element math is model/ops_math.hpp's and gpu/math/layer_math.hpp's.
#include "troupe/gpu/kernel_common.cuh"
#include "troupe/gpu/kernels.hpp"

namespace troupe::gpu::kernels {

namespace {

constexpr int row_threads = 256;

// Sum of squares accumulated in double, as the CPU backend does.
__global__ void rms_norm_kernel(const float* x, const int32_t* rows, const float* weight, float* out, int32_t dim,
                                float eps) {
  __shared__ double scratch[33];
  const int64_t src = rows ? rows[blockIdx.x] : blockIdx.x;
  const float* xr = x + src * dim;
  double sum = 0.0;
  for (int32_t i = threadIdx.x; i < dim; i += blockDim.x) sum += (double)(xr[i] * xr[i]);
  const float scale = rms_scale(block_sum(sum, scratch), dim, eps);
  float* o = out + (int64_t)blockIdx.x * dim;
  for (int32_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = rms_norm_element(xr[i], scale, weight[i]);
}

__global__ void add_rms_norm_kernel(float* x, const float* delta, const float* weight, float* out, int32_t dim,
                                    float eps) {
  __shared__ double scratch[33];
  float* xr = x + (int64_t)blockIdx.x * dim;
  const float* dr = delta + (int64_t)blockIdx.x * dim;
  double sum = 0.0;
  for (int32_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = xr[i] + dr[i];
    xr[i] = v;
    sum += (double)(v * v);
  }
  const float scale = rms_scale(block_sum(sum, scratch), dim, eps);
  float* o = out + (int64_t)blockIdx.x * dim;
  for (int32_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = rms_norm_element(xr[i], scale, weight[i]);
}

__global__ void add_kernel(float* x, const float* delta, int64_t n) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += delta[i];
}

__global__ void silu_mul_kernel(float* gate, const float* up, int64_t n) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) gate[i] = silu_gate(gate[i], up[i]);
}

__global__ void to_half_kernel(const float* x, uint16_t* out, int64_t n) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = fp32_to_fp16(x[i]);
}

__global__ void rope_store_kv_kernel(float* q, float* k, const float* v, const int32_t* positions,
                                     const int32_t* row_table, const int32_t* block_tables, rope_args rope,
                                     uint16_t* pool, kv_layout layout, int32_t layer) {
  const int64_t row = blockIdx.x;
  const int32_t pos = positions[row];
  const int32_t half = rope.rope_dim / 2;
  const int32_t q_dim = rope.num_heads * rope.head_dim, kv_dim = rope.num_kv_heads * rope.head_dim;
  const float* cs = rope.cos + (int64_t)pos * half;
  const float* sn = rope.sin + (int64_t)pos * half;
  const int32_t num_pairs = (rope.num_heads + rope.num_kv_heads) * half;
  for (int32_t p = threadIdx.x; p < num_pairs; p += blockDim.x) {
    const int32_t head = p / half, i = p % half;
    float* base = head < rope.num_heads ? q + row * q_dim + (int64_t)head * rope.head_dim
                                        : k + row * kv_dim + (int64_t)(head - rope.num_heads) * rope.head_dim;
    int32_t i0, i1;
    rope_pair(rope.kind, i, half, i0, i1);
    rope_rotate(base[i0], base[i1], cs[i], sn[i]);
  }
  __syncthreads();  // the rotated k must be complete before it is stored
  const int32_t* table = block_tables + row_table[row];
  uint16_t* kd = pool + layout.index_at(table, layer, 0, pos);
  uint16_t* vd = pool + layout.index_at(table, layer, 1, pos);
  for (int32_t i = threadIdx.x; i < kv_dim; i += blockDim.x) {
    kd[i] = fp32_to_fp16(k[row * kv_dim + i]);
    vd[i] = fp32_to_fp16(v[row * kv_dim + i]);
  }
}

}  // namespace

void rms_norm(const float* x, const int32_t* rows, int32_t num_rows, const float* weight, float* out, int32_t dim,
              float eps, cudaStream_t stream) {
  if (num_rows == 0) return;
  rms_norm_kernel<<<num_rows, row_threads, 0, stream>>>(x, rows, weight, out, dim, eps);
  check_launch("rms_norm");
}

void add_rms_norm(float* x, const float* delta, const float* weight, float* out, int32_t num_rows, int32_t dim,
                  float eps, cudaStream_t stream) {
  if (num_rows == 0) return;
  add_rms_norm_kernel<<<num_rows, row_threads, 0, stream>>>(x, delta, weight, out, dim, eps);
  check_launch("add_rms_norm");
}

void add(float* x, const float* delta, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  add_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(x, delta, n);
  check_launch("add");
}

void silu_mul(float* gate, const float* up, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  silu_mul_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(gate, up, n);
  check_launch("silu_mul");
}

void to_half(const float* x, uint16_t* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  to_half_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(x, out, n);
  check_launch("to_half");
}

void rope_store_kv(float* q, float* k, const float* v, const int32_t* positions, const int32_t* row_table,
                   const int32_t* block_tables, int32_t num_rows, const rope_args& rope, uint16_t* pool,
                   const kv_layout& layout, int32_t layer, cudaStream_t stream) {
  if (num_rows == 0) return;
  rope_store_kv_kernel<<<num_rows, 128, 0, stream>>>(q, k, v, positions, row_table, block_tables, rope, pool, layout,
                                                     layer);
  check_launch("rope_store_kv");
}

}  // namespace troupe::gpu::kernels
