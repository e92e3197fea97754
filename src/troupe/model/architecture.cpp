// The architecture table and the load-time checks of a file's metadata keys and tensor
// names against it.
#include "troupe/model/architecture.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <span>
#include <string>
#include <vector>

#include "troupe/model/error.hpp"

namespace troupe {

namespace {

constexpr std::array k_architectures = {
    architecture_traits{"llama", rope_kind::norm, false, false, true},
    architecture_traits{"mistral", rope_kind::norm, false, false, true},
    architecture_traits{"qwen2", rope_kind::neox, true, false, false},
    architecture_traits{"qwen3", rope_kind::neox, false, true, false},
};

// The keys under "<arch>." that model_config reads. rope.scaling.original_context_length
// and rope.scaling.finetuned only matter to scaling types that model_config refuses.
constexpr auto k_known_keys = std::to_array<std::string_view>({
    "context_length", "embedding_length", "block_count", "feed_forward_length", "vocab_size",
    "attention.head_count", "attention.head_count_kv", "attention.layer_norm_rms_epsilon",
    "attention.key_length", "attention.value_length", "rope.dimension_count", "rope.freq_base",
    "rope.scaling.type", "rope.scaling.factor", "rope.scale_linear", "rope.scaling.original_context_length",
    "rope.scaling.finetuned",
});

// Mixture-of-experts counts written as zero by converters of dense models.
constexpr auto k_zero_only_keys = std::to_array<std::string_view>({"expert_count", "expert_used_count"});

bool is_one_of(std::string_view s, std::span<const std::string_view> list) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

// The per-layer tensor names (after "blk.N.") of an architecture.
std::vector<std::string_view> layer_tensors(const architecture_traits& arch) {
  std::vector<std::string_view> names = {"attn_norm.weight", "attn_q.weight", "attn_k.weight",  "attn_v.weight",
                                         "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight",
                                         "ffn_up.weight", "ffn_down.weight"};
  if (arch.has_qkv_bias) names.insert(names.end(), {"attn_q.bias", "attn_k.bias", "attn_v.bias"});
  if (arch.has_qk_norm) names.insert(names.end(), {"attn_q_norm.weight", "attn_k_norm.weight"});
  return names;
}

[[noreturn]] void refuse_tensor(const std::string& name, const architecture_traits& arch, const std::string& why) {
  throw error(error_code::unsupported, "tensor '" + name + "' " + why + " in troupe's " + std::string(arch.name) +
                                           " graph; refusing the model rather than ignoring it");
}

}  // namespace

const architecture_traits* find_architecture(std::string_view name) {
  for (const auto& a : k_architectures) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

std::string_view supported_architectures() { return "llama, mistral, qwen2, qwen3"; }

void check_metadata_keys(const gguf::file& file, const architecture_traits& arch) {
  const std::string prefix = std::string(arch.name) + ".";
  for (const auto& [key, value] : file.metadata()) {
    if (!key.starts_with(prefix)) continue;
    const std::string_view suffix = std::string_view(key).substr(prefix.size());
    if (is_one_of(suffix, k_known_keys)) continue;
    if (is_one_of(suffix, k_zero_only_keys) && file.get_int(key) == 0) continue;
    throw error(error_code::unsupported, "metadata key " + key + " names a feature troupe does not implement; " +
                                             "refusing the model rather than ignoring it");
  }
}

void check_tensor_names(const gguf::file& file, const architecture_traits& arch, int32_t num_layers) {
  const auto per_layer = layer_tensors(arch);
  for (const auto& t : file.tensors()) {
    const std::string_view name = t.name;
    if (name == "token_embd.weight" || name == "output_norm.weight" || name == "output.weight") continue;
    if (name == "rope_freqs.weight") {
      if (arch.allows_rope_freq_factors) continue;
      refuse_tensor(t.name, arch, "(rotary frequency factors) has no place");
    }
    if (!name.starts_with("blk.")) refuse_tensor(t.name, arch, "has no place");
    const std::string_view rest = name.substr(4);
    const size_t dot = rest.find('.');
    int32_t layer = -1;
    const auto parsed = std::from_chars(rest.data(), rest.data() + std::min(dot, rest.size()), layer);
    if (dot == std::string_view::npos || parsed.ec != std::errc{} || parsed.ptr != rest.data() + dot) {
      refuse_tensor(t.name, arch, "has no place");
    }
    if (layer < 0 || layer >= num_layers) {
      refuse_tensor(t.name, arch, "is past block_count " + std::to_string(num_layers) + " and has no place");
    }
    if (!is_one_of(rest.substr(dot + 1), per_layer)) refuse_tensor(t.name, arch, "has no place");
  }
  for (int32_t l = 0; l < num_layers; ++l) {
    for (const std::string_view suffix : per_layer) {
      const std::string name = "blk." + std::to_string(l) + "." + std::string(suffix);
      if (file.find_tensor(name) == nullptr) {
        throw error(error_code::invalid_model, "missing tensor " + name + " (a " + std::string(arch.name) +
                                                   " model has it in every layer)");
      }
    }
  }
}

}  // namespace troupe
