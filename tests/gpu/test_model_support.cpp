// What the CUDA backend accepts of a model, decided on the host before any upload: qwen2's
// biases and qwen3's q/k norms are refused with the reason; NEOX rotation and llama 3.x
// frequency factors (through the shared RoPE table) are run.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "troupe/gpu/model_support.hpp"
#include "troupe/model/error.hpp"
#include "troupe/model/ops_math.hpp"
#include "troupe/model/rope_table.hpp"

using namespace troupe;

namespace {

model_config llama_like() {
  model_config c;
  c.architecture = "llama";
  c.embedding_dim = 256;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  c.rope_dim = 64;
  c.context_length = 32;
  return c;
}

std::string refusal(const model_config& c) {
  try {
    gpu::check_cuda_supports(c);
  } catch (const error& e) {
    CHECK(e.code() == error_code::unsupported);
    return e.what();
  }
  FAIL("check_cuda_supports accepted the model");
  return {};
}

}  // namespace

TEST_CASE("cuda support: llama, NEOX rotation and rope frequency factors are accepted") {
  auto c = llama_like();
  CHECK_NOTHROW(gpu::check_cuda_supports(c));
  c.rope = rope_kind::neox;
  c.rope_freq_factors.assign(32, 2.0f);
  CHECK_NOTHROW(gpu::check_cuda_supports(c));
}

TEST_CASE("cuda support: qwen2's q/k/v biases are refused, saying so") {
  auto c = llama_like();
  c.architecture = "qwen2";
  c.has_qkv_bias = true;
  const auto message = refusal(c);
  CHECK(message.find("qwen2") != std::string::npos);
  CHECK(message.find("biases") != std::string::npos);
}

TEST_CASE("cuda support: qwen3's per-head q/k norms and a query width other than the model's are refused") {
  auto c = llama_like();
  c.architecture = "qwen3";
  c.has_qk_norm = true;
  CHECK(refusal(c).find("attn_q_norm") != std::string::npos);
  c.has_qk_norm = false;
  c.head_dim = c.rope_dim = 128;  // 4 x 128 = 512 query columns on a 256-wide model
  CHECK(refusal(c).find("width") != std::string::npos);
}

TEST_CASE("rope table: frequency factors divide each pair's angle before the linear scale") {
  auto c = llama_like();
  c.rope_freq_scale = 0.5f;
  const auto plain = make_rope_table(c);
  c.rope_freq_factors.resize(32);
  for (int32_t i = 0; i < 32; ++i) c.rope_freq_factors[i] = 1.0f + (float)i;
  const auto scaled = make_rope_table(c);
  for (int32_t p : {1, 5, 31}) {
    for (int32_t i = 0; i < 32; ++i) {
      const float theta = rope_theta(p, i, c.rope_dim, c.rope_freq_base, 1.0f);
      CHECK(scaled.cos[(size_t)p * 32 + i] == cosf(0.5f * (theta / c.rope_freq_factors[i])));
      CHECK(scaled.sin[(size_t)p * 32 + i] == sinf(0.5f * (theta / c.rope_freq_factors[i])));
    }
  }
  CHECK(scaled.cos[32 + 0] == plain.cos[32 + 0]);  // a factor of 1 leaves the angle's bits alone
}
