#include "troupe/model/model_config.hpp"

#include <cmath>
#include <cstring>
#include <string>

#include "troupe/model/architecture.hpp"
#include "troupe/model/error.hpp"

namespace troupe {

namespace {

int32_t required_int(const gguf::file& file, const std::string& key, int64_t min, int64_t max) {
  const auto v = file.get_int(key);
  if (!v) throw error(error_code::invalid_model, "missing metadata key " + key);
  if (*v < min || *v > max) {
    throw error(error_code::invalid_model, key + " = " + std::to_string(*v) + " is out of range [" +
                                               std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return static_cast<int32_t>(*v);
}

// rope_freqs.weight: one positive factor per rotated pair.
std::vector<float> read_rope_freq_factors(const gguf::file& file, int32_t rope_dim) {
  const auto* t = file.find_tensor("rope_freqs.weight");
  if (t == nullptr) return {};
  if (t->type != ggml_type::f32 || t->dims[0] != rope_dim / 2 || t->num_rows() != 1) {
    throw error(error_code::invalid_model, "tensor rope_freqs.weight must be F32 with rope_dim/2 = " +
                                               std::to_string(rope_dim / 2) + " values");
  }
  std::vector<float> factors(static_cast<size_t>(rope_dim / 2));
  std::memcpy(factors.data(), t->data, factors.size() * sizeof(float));
  for (size_t i = 0; i < factors.size(); ++i) {
    if (!(factors[i] > 0.0f) || !std::isfinite(factors[i])) {
      throw error(error_code::invalid_model, "rope_freqs.weight[" + std::to_string(i) + "] = " +
                                                 std::to_string(factors[i]) + " is not a positive number");
    }
  }
  return factors;
}

}  // namespace

model_config model_config::from_gguf(const gguf::file& file) {
  model_config c;
  c.architecture = file.get_string("general.architecture").value_or("");
  if (c.architecture.empty()) throw error(error_code::invalid_model, "missing metadata key general.architecture");
  const architecture_traits* arch = find_architecture(c.architecture);
  if (arch == nullptr) {
    throw error(error_code::unsupported, "architecture '" + c.architecture + "' is not supported (troupe runs " +
                                             std::string(supported_architectures()) + ")");
  }
  check_metadata_keys(file, *arch);
  c.name = file.get_string("general.name").value_or("");
  const std::string a = c.architecture + ".";
  c.num_layers = required_int(file, a + "block_count", 1, 4096);
  c.embedding_dim = required_int(file, a + "embedding_length", 1, 1 << 20);
  c.ffn_dim = required_int(file, a + "feed_forward_length", 1, 1 << 22);
  c.num_heads = required_int(file, a + "attention.head_count", 1, 4096);
  c.num_kv_heads = file.get_int(a + "attention.head_count_kv") ? required_int(file, a + "attention.head_count_kv", 1, 4096)
                                                               : c.num_heads;
  c.context_length = required_int(file, a + "context_length", 1, 1 << 24);
  if (c.num_heads % c.num_kv_heads != 0) {
    throw error(error_code::invalid_model, "attention.head_count is not a multiple of attention.head_count_kv");
  }
  if (file.get_int(a + "attention.key_length")) {
    c.head_dim = required_int(file, a + "attention.key_length", 1, 4096);
  } else if (c.embedding_dim % c.num_heads != 0) {
    throw error(error_code::invalid_model, "embedding_length is not a multiple of attention.head_count");
  } else {
    c.head_dim = c.embedding_dim / c.num_heads;
  }
  if (auto v = file.get_int(a + "attention.value_length"); v && *v != c.head_dim) {
    throw error(error_code::unsupported, a + "attention.value_length = " + std::to_string(*v) +
                                             " differs from the key length " + std::to_string(c.head_dim) +
                                             "; troupe's attention needs them equal");
  }
  c.rope_dim = file.get_int(a + "rope.dimension_count") ? required_int(file, a + "rope.dimension_count", 2, c.head_dim)
                                                        : c.head_dim;
  if (c.rope_dim % 2 != 0) throw error(error_code::invalid_model, a + "rope.dimension_count must be even");
  c.rms_eps = static_cast<float>(file.get_float(a + "attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.rope_freq_base = static_cast<float>(file.get_float(a + "rope.freq_base").value_or(10000.0));
  double scale = 1.0;
  if (auto type = file.get_string(a + "rope.scaling.type"); type && *type != "none" && *type != "linear") {
    throw error(error_code::unsupported, a + "rope.scaling.type '" + *type + "' is not supported (none and linear are)");
  }
  if (auto factor = file.get_float(a + "rope.scaling.factor"); factor && *factor > 0.0) scale = 1.0 / *factor;
  if (auto linear = file.get_float(a + "rope.scale_linear"); linear && *linear > 0.0) scale = 1.0 / *linear;
  c.rope_freq_scale = static_cast<float>(scale);
  if (!(c.rms_eps > 0.0f) || !(c.rope_freq_base > 0.0f)) {
    throw error(error_code::invalid_model, "rms epsilon and rope.freq_base must be positive");
  }

  const auto* embd = file.find_tensor("token_embd.weight");
  if (!embd) throw error(error_code::invalid_model, "missing tensor token_embd.weight");
  if (embd->dims[0] != c.embedding_dim) {
    throw error(error_code::invalid_model, "token_embd.weight width does not match embedding_length");
  }
  c.vocab_size = static_cast<int32_t>(embd->dims[1]);
  if (auto v = file.get_int(a + "vocab_size"); v && *v != c.vocab_size) {
    throw error(error_code::invalid_model, a + "vocab_size disagrees with token_embd.weight");
  }
  // qwen2 files have no vocab_size key: the token list is the other witness.
  if (const auto* tokens = file.get_array("tokenizer.ggml.tokens"); tokens && (int64_t)tokens->size() != c.vocab_size) {
    throw error(error_code::invalid_model, "tokenizer.ggml.tokens has " + std::to_string(tokens->size()) +
                                               " entries but token_embd.weight has " + std::to_string(c.vocab_size) +
                                               " rows");
  }
  c.has_output_weight = file.find_tensor("output.weight") != nullptr;
  c.rope = arch->rope;
  c.has_qkv_bias = arch->has_qkv_bias;
  c.has_qk_norm = arch->has_qk_norm;
  check_tensor_names(file, *arch, c.num_layers);
  c.rope_freq_factors = read_rope_freq_factors(file, c.rope_dim);
  return c;
}

}  // namespace troupe
