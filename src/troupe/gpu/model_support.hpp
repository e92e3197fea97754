// What the CUDA backend's kernels implement of a model's graph, checked on the host before
// any upload: a model that needs more is refused with the reason, never run approximately.
#pragma once
#include "troupe/model/model_config.hpp"

namespace troupe::gpu {

// Throws troupe::error(unsupported) naming the first feature the CUDA kernels lack:
// q/k/v biases (qwen2), per-head q/k RMSNorm (qwen3), a head size other than 32, 64, 128 or
// 256, or heads × head_dim different from the width. NEOX rotation and rope_freqs factors
// (the shared RoPE table) are implemented.
void check_cuda_supports(const model_config& c);

}  // namespace troupe::gpu
