// The hyperparameters of a llama-family model (llama, mistral, qwen2, qwen3), read from GGUF
// metadata, plus the few small tensors that act as hyperparameters (rotary frequency factors).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "troupe/model/gguf.hpp"

namespace troupe {

enum class rope_kind { norm, neox };  // adjacent pairs (llama) or half-split pairs (qwen2, ...)

struct model_config {
  std::string architecture;   // general.architecture: llama, mistral, qwen2 or qwen3
  std::string name;           // general.name, if present
  int32_t num_layers = 0;
  int32_t embedding_dim = 0;
  int32_t ffn_dim = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t rope_dim = 0;       // rotated dimensions per head (<= head_dim)
  int32_t vocab_size = 0;     // rows of token_embd.weight, equal to the tokenizer's token count
  int32_t context_length = 0;
  float rms_eps = 1e-5f;
  float rope_freq_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // 1 / linear scaling factor
  rope_kind rope = rope_kind::norm;
  bool has_output_weight = false;  // false: the output head is tied to token_embd
  bool has_qkv_bias = false;       // attn_{q,k,v}.bias added after the projections (qwen2)
  bool has_qk_norm = false;        // attn_{q,k}_norm: RMSNorm of each q and k head before RoPE (qwen3)
  // rope_freqs.weight (llama 3.x): pair i's rotary frequency is divided by factor i;
  // rope_dim/2 values, or empty when the file has none.
  std::vector<float> rope_freq_factors;

  int32_t kv_dim() const { return num_kv_heads * head_dim; }
  int32_t q_dim() const { return num_heads * head_dim; }

  // Throws troupe::error(invalid_model / unsupported) naming the missing or bad key or
  // tensor; anything in the file that troupe does not implement is refused
  // (model/architecture.hpp).
  static model_config from_gguf(const gguf::file& file);
};

}  // namespace troupe
