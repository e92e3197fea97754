// Host-side launchers of the CUDA kernels, one group per .cu file. Pointers are device
// pointers; every launch is asynchronous on the given stream. Included by the backend's
// host code and the .cu files only (it needs the CUDA runtime header).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "troupe/gpu/device_plan.hpp"
#include "troupe/gpu/math/kv_layout.hpp"
#include "troupe/model/model_config.hpp"
#include "troupe/model/quant.hpp"

namespace troupe::gpu {

// A weight matrix on the device as GGUF stores it: rows of cols values of `type`.
struct device_matrix {
  const void* data = nullptr;
  ggml_type type = ggml_type::f32;
  int64_t rows = 0, cols = 0;
  const uint16_t* half = nullptr;  // an fp16 copy kept for the GEMMs, when memory allows; else null
};

namespace kernels {

// dequant.cu: the whole matrix as fp16 (rows x cols), for the prefill GEMMs; and embedding
// rows (token ids) as fp32.
void dequantize_to_half(const device_matrix& w, uint16_t* out, cudaStream_t stream);
void embed(const device_matrix& table, const int32_t* tokens, int32_t num_rows, float* x, cudaStream_t stream);

// gemv.cu: y[t][r] = sum_k W[r][k] x[t][k] for up to max_gemv_tokens tokens, dequantizing
// each weight block once for all of them.
constexpr int32_t max_gemv_tokens = 8;
void gemv(const device_matrix& w, const float* x, int32_t num_tokens, float* y, cudaStream_t stream);

// layer_ops.cu
// out[r] = rmsnorm(x[rows ? rows[r] : r]) * weight, rows of dim values.
void rms_norm(const float* x, const int32_t* rows, int32_t num_rows, const float* weight, float* out, int32_t dim,
              float eps, cudaStream_t stream);
// x += delta; out = rmsnorm(x) * weight.
void add_rms_norm(float* x, const float* delta, const float* weight, float* out, int32_t num_rows, int32_t dim,
                  float eps, cudaStream_t stream);
void add(float* x, const float* delta, int64_t n, cudaStream_t stream);
void silu_mul(float* gate, const float* up, int64_t n, cudaStream_t stream);
void to_half(const float* x, uint16_t* out, int64_t n, cudaStream_t stream);

struct rope_args {
  int32_t num_heads = 0, num_kv_heads = 0, head_dim = 0, rope_dim = 0;
  rope_kind kind = rope_kind::norm;
  const float* cos = nullptr;  // [context][rope_dim / 2]
  const float* sin = nullptr;
};
// Rotates q and k of every row at its position, then stores k and v into the pool as fp16.
void rope_store_kv(float* q, float* k, const float* v, const int32_t* positions, const int32_t* row_table,
                   const int32_t* block_tables, int32_t num_rows, const rope_args& rope, uint16_t* pool,
                   const kv_layout& layout, int32_t layer, cudaStream_t stream);

// attention.cu: causal paged attention of every row against positions [0, its position].
void attention(const float* q, const int32_t* positions, const int32_t* row_table, const int32_t* block_tables,
               int32_t num_rows, int32_t num_heads, int32_t num_kv_heads, int32_t head_dim, const uint16_t* pool,
               const kv_layout& layout, int32_t layer, float* out, cudaStream_t stream);

// kv_cache.cu: whole-block copies inside the pool, pairs (src, dst) as 2 * num_pairs ints.
void copy_blocks(uint16_t* pool, const int32_t* pairs, int32_t num_pairs, int64_t block_elements,
                 cudaStream_t stream);

// sampling.cu: one thread block per sample. logits holds the chunk's logit rows starting at
// logit index first_index; work holds one vocab row per sample for the penalized copy.
struct sample_inputs {
  const float* logits = nullptr;
  int32_t first_index = 0;
  float* work = nullptr;
  const device_sample* samples = nullptr;
  int32_t num_samples = 0;
  const int32_t* penalty_tokens = nullptr;
  const int32_t* bias_tokens = nullptr;
  const float* bias_values = nullptr;
  const int32_t* stop_tokens = nullptr;
  const int32_t* eog_ids = nullptr;
  int32_t num_eog = 0;
  int32_t vocab_size = 0;
};
void sample(const sample_inputs& in, device_sample_out* out, cudaStream_t stream);

}  // namespace kernels
}  // namespace troupe::gpu
