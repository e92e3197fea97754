// The CPU backend: llama-family (llama, mistral, qwen2, qwen3) forward pass over a paged
// KV cache, with quantized kernels and a persistent thread pool. One object per worker; step() is called from one
// thread at a time.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "troupe/cpu/kv_memory.hpp"
#include "troupe/cpu/matmul.hpp"
#include "troupe/cpu/thread_pool.hpp"
#include "troupe/model/backend.hpp"
#include "troupe/model/gguf.hpp"
#include "troupe/model/rope_table.hpp"
#include "troupe/model/sampler.hpp"

namespace troupe::cpu {

struct cpu_backend_options {
  int num_threads = 0;           // 0: one per core
  int32_t block_size = 16;       // KV positions per block
  int64_t kv_cache_bytes = 0;    // 0: enough for max(4 * context, 16384) positions, capped at 1 GiB
  int32_t num_blocks = 0;        // overrides kv_cache_bytes when > 0
  int32_t num_swap_blocks = 0;   // host swap space for preempted sequences (0: none)
  kv_cache_dtype kv_dtype = kv_cache_dtype::f16;  // how K/V are stored: sets the bytes a block takes
  // A quantized cache stores K and V under a Walsh-Hadamard rotation (kv_quant.hpp; what
  // llama.cpp does by default). Off: plain block quantization, for comparisons only.
  bool kv_rotation = true;
  std::vector<int32_t> eog_ids;  // suppressed by ignore_eos
  // Logits only for token ids [0, num_output_rows), the others -infinity: the output head
  // packed and read for that many rows only. For a draft model, whose head over a large
  // vocabulary is a large share of its step (docs/speculative.md, "The draft's vocabulary").
  // 0 or >= the vocabulary: every row.
  int64_t num_output_rows = 0;
  // The threads to run on, shared with another backend stepped from the same thread (a draft
  // model beside its target, whose steps alternate: two pools would each spin while the
  // other works). Null: a pool of num_threads of its own.
  std::shared_ptr<thread_pool> pool;
};

// KV blocks the pool gets: num_blocks when > 0, else the byte budget (kv_cache_bytes, or
// the default) over the bytes of one block in options.kv_dtype. Throws troupe::error when
// not even one block fits.
int32_t kv_pool_num_blocks(const model_config& config, const cpu_backend_options& options);

class cpu_backend final : public backend {
 public:
  cpu_backend(std::shared_ptr<const gguf::file> file, const cpu_backend_options& options);
  ~cpu_backend() override;

  const model_config& config() const override { return config_; }
  kv_cache_shape kv_shape() const override;
  step_result step(const batch_plan& plan) override;
  void copy_blocks(const std::vector<std::pair<int32_t, int32_t>>& pairs) override;
  int32_t num_swap_blocks() const override { return swap_ ? swap_->num_blocks() : 0; }
  void swap_out(const std::vector<std::pair<int32_t, int32_t>>& device_to_host) override;
  void swap_in(const std::vector<std::pair<int32_t, int32_t>>& host_to_device) override;
  // fp32 attention against int8 (VNNI) matmuls: a little under half their speed per
  // multiply-add on AVX-512 (2,048-token prefill chunks at depth 0 and 2,048 on
  // SmolLM2-135M, 2 threads: 0.76 ms per token, 0.43 µs per attended pair, 1,770 pairs a
  // token against 3,890 by the multiply-add count). The scheduler refits it from the steps
  // it times.
  double attention_efficiency() const override { return 0.45; }
  bool supports_speculation() const override { return true; }

  int num_threads() const { return pool_.num_threads(); }
  const std::shared_ptr<thread_pool>& pool() const { return pool_owner_; }
  kv_cache_dtype kv_dtype() const { return kv_->dtype(); }
  // Bytes of weights one decode step reads (all matrices + the output head + norms).
  int64_t weight_bytes_per_token() const { return weight_bytes_per_token_; }
  // Bytes of the matrices as packed for the kernels (held in memory beside the mapped file;
  // the output head is one of them, the embedding lookup reads the file's rows).
  int64_t packed_weight_bytes() const;

 private:
  struct layer_weights {
    const float* attn_norm;
    const float* ffn_norm;
    packed_matrix wq, wk, wv, wo, w_gate, w_up, w_down;
    const float* q_bias = nullptr;  // has_qkv_bias
    const float* k_bias = nullptr;
    const float* v_bias = nullptr;
    const float* q_norm = nullptr;  // has_qk_norm: [head_dim], shared by the heads
    const float* k_norm = nullptr;
  };
  struct workspace;

  void validate(const batch_plan& plan) const;
  void embed(const batch_plan& plan, float* x) const;

  std::shared_ptr<const gguf::file> file_;
  model_config config_;
  std::shared_ptr<thread_pool> pool_owner_;
  thread_pool& pool_;
  const gguf::tensor_info* token_embd_ = nullptr;
  const float* output_norm_ = nullptr;
  packed_matrix output_;
  std::vector<layer_weights> layers_;
  std::unique_ptr<kv_memory> kv_;
  std::unique_ptr<kv_memory> swap_;  // host swap space, same block geometry
  int32_t key_rotation_ = 0;    // rotate_hadamard run length for Q and K (0: none)
  int32_t value_rotation_ = 0;  // for V and the attention output (0: none)
  sampler sampler_;
  std::unique_ptr<workspace> ws_;
  rope_table rope_;
  int64_t weight_bytes_per_token_ = 0;
};

}  // namespace troupe::cpu
