// The hyperparameters of a llama-family model, read from GGUF metadata.
#pragma once
#include <cstdint>
#include <string>

#include "troupe/model/gguf.hpp"

namespace troupe {

enum class rope_kind { norm, neox };  // adjacent pairs (llama) or half-split pairs (qwen2, ...)

struct model_config {
  std::string architecture;   // general.architecture, e.g. "llama"
  std::string name;           // general.name, if present
  int32_t num_layers = 0;
  int32_t embedding_dim = 0;
  int32_t ffn_dim = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t rope_dim = 0;       // rotated dimensions per head (<= head_dim)
  int32_t vocab_size = 0;
  int32_t context_length = 0;
  float rms_eps = 1e-5f;
  float rope_freq_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // 1 / linear scaling factor
  rope_kind rope = rope_kind::norm;
  bool has_output_weight = false;  // false: the output head is tied to token_embd

  int32_t kv_dim() const { return num_kv_heads * head_dim; }
  int32_t q_dim() const { return num_heads * head_dim; }

  // Throws troupe::error(invalid_model / unsupported) naming the missing or bad key.
  static model_config from_gguf(const gguf::file& file);
};

}  // namespace troupe
