#include "troupe/gpu/model_support.hpp"

#include <string>

#include "troupe/model/error.hpp"

namespace troupe::gpu {

namespace {
[[noreturn]] void refuse(const model_config& c, const std::string& what) {
  throw error(error_code::unsupported, "the CUDA backend cannot run this " + c.architecture + " model: " + what +
                                           "; use the CPU backend");
}
}  // namespace

void check_cuda_supports(const model_config& c) {
  if (c.has_qkv_bias) refuse(c, "its q/k/v projection biases (attn_q.bias, ...) are not implemented on the GPU");
  if (c.has_qk_norm) refuse(c, "its per-head q/k RMSNorm (attn_q_norm, attn_k_norm) is not implemented on the GPU");
  if (c.head_dim % 32 != 0 || c.head_dim > 256) {
    refuse(c, "the kernels need head_dim 32, 64, 128 or 256, the model has " + std::to_string(c.head_dim));
  }
  if (c.q_dim() != c.embedding_dim) {
    refuse(c, "the kernels need heads x head_dim (" + std::to_string(c.q_dim()) + ") to equal the width (" +
                  std::to_string(c.embedding_dim) + ")");
  }
}

}  // namespace troupe::gpu
