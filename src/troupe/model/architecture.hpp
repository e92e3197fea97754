// The model architectures troupe runs, and what each one's GGUF may contain: which
// metadata keys and which tensors. Everything else in a file is refused at load, naming
// it, so that a feature troupe does not implement is never silently ignored.
#pragma once
#include <string_view>

#include "troupe/model/gguf.hpp"
#include "troupe/model/model_config.hpp"

namespace troupe {

// How an architecture's graph departs from llama's (pre-norm, RoPE, GQA, SwiGLU).
struct architecture_traits {
  std::string_view name;        // general.architecture, also the metadata prefix
  rope_kind rope;               // norm: Q/K rows permuted by the converter; neox: as trained
  bool has_qkv_bias;            // attn_{q,k,v}.bias, added after the projections (qwen2)
  bool has_qk_norm;             // attn_{q,k}_norm.weight, RMSNorm per head before RoPE (qwen3)
  bool allows_rope_freq_factors;  // rope_freqs.weight may be present (llama 3.x)
};

// nullptr when troupe does not run the architecture.
const architecture_traits* find_architecture(std::string_view name);

// "llama, mistral, qwen2, qwen3": for messages.
std::string_view supported_architectures();

// Throws troupe::error(unsupported) naming the first metadata key under "<arch>." that
// troupe does not read (a sliding window, soft-capping, experts, YaRN parameters, ...).
void check_metadata_keys(const gguf::file& file, const architecture_traits& arch);

// Throws troupe::error(unsupported) naming the first tensor that the architecture's graph
// does not use (an unknown name, a layer index past block_count, a bias or norm the
// architecture does not have), and troupe::error(invalid_model) naming the first tensor
// that the architecture needs and the file lacks. Shapes are checked where the tensors are
// read.
void check_tensor_names(const gguf::file& file, const architecture_traits& arch, int32_t num_layers);

}  // namespace troupe
