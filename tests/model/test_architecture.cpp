// Model config specs per architecture (llama, qwen2, qwen3): what each reads from the
// metadata, and the refusal, naming it, of anything in a file that troupe does not
// implement.
#include <doctest/doctest.h>

#include <string>

#include "troupe/model/error.hpp"
#include "troupe/model/model_config.hpp"
#include "util/tiny_model.hpp"

using namespace troupe;

namespace {

model_config config_of(const test::tiny_model_options& o) {
  return model_config::from_gguf(gguf::file::parse(test::make_tiny_llama(o)));
}

// The message of the troupe::error that loading throws; checks its code.
std::string refusal(const test::tiny_model_options& o, error_code code = error_code::unsupported) {
  try {
    config_of(o);
  } catch (const error& e) {
    CHECK(e.code() == code);
    return e.what();
  }
  FAIL("model_config::from_gguf accepted the file");
  return {};
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

test::tiny_model_options qwen2() {
  test::tiny_model_options o;
  o.architecture = "qwen2";
  return o;
}

}  // namespace

TEST_CASE("a llama file reads as llama: adjacent-pair rotation, no biases, no q/k norms") {
  const auto c = config_of({});
  CHECK(c.architecture == "llama");
  CHECK(c.rope == rope_kind::norm);
  CHECK_FALSE(c.has_qkv_bias);
  CHECK_FALSE(c.has_qk_norm);
  CHECK(c.rope_freq_factors.empty());
}

TEST_CASE("a qwen2 file reads with biases, NEOX rotation, head_dim from the width and the vocabulary from the tokens") {
  const auto c = config_of(qwen2());
  CHECK(c.architecture == "qwen2");
  CHECK(c.rope == rope_kind::neox);
  CHECK(c.has_qkv_bias);
  CHECK_FALSE(c.has_qk_norm);
  CHECK(c.head_dim == 16);  // 64 wide / 4 heads: no rope.dimension_count, no key_length
  CHECK(c.rope_dim == 16);
  CHECK(c.vocab_size == (int32_t)test::make_tiny_vocab().tokens.size());
}

TEST_CASE("a qwen3 file reads with per-head q/k norms and head_dim from key_length") {
  test::tiny_model_options o;
  o.architecture = "qwen3";
  o.head_dim = 32;
  const auto c = config_of(o);
  CHECK(c.rope == rope_kind::neox);
  CHECK(c.has_qk_norm);
  CHECK_FALSE(c.has_qkv_bias);
  CHECK(c.head_dim == 32);
  CHECK(c.q_dim() == 128);
}

TEST_CASE("a llama rope_freqs tensor becomes the config's frequency factors") {
  test::tiny_model_options o;
  o.has_rope_freq_factors = true;
  const auto c = config_of(o);
  REQUIRE(c.rope_freq_factors.size() == 8);
  CHECK(c.rope_freq_factors.front() == 1.0f);
  CHECK(c.rope_freq_factors.back() == 8.0f);
}

TEST_CASE("an unknown architecture is refused, naming it and the supported ones") {
  test::gguf_writer w;
  w.add_string("general.architecture", "gemma2");
  std::string message;
  try {
    model_config::from_gguf(gguf::file::parse(w.bytes()));
  } catch (const error& e) {
    CHECK(e.code() == error_code::unsupported);
    message = e.what();
  }
  CHECK(contains(message, "'gemma2'"));
  CHECK(contains(message, "qwen2"));
}

TEST_CASE("metadata keys troupe does not implement are refused by name") {
  for (const std::string key : {"qwen2.attention.sliding_window", "qwen2.rope.scaling.yarn_log_multiplier",
                                "qwen2.attn_logit_softcapping", "qwen2.expert_count"}) {
    CAPTURE(key);
    auto o = qwen2();
    o.add_extra = [&](test::gguf_writer& w) { w.add_u32(key, 8); };
    CHECK(contains(refusal(o), key));
  }
}

TEST_CASE("dense models' zero expert counts are accepted") {
  auto o = qwen2();
  o.add_extra = [](test::gguf_writer& w) {
    w.add_u32("qwen2.expert_count", 0);
    w.add_u32("qwen2.expert_used_count", 0);
  };
  CHECK_NOTHROW(config_of(o));
}

TEST_CASE("rope scaling other than none or linear is refused, naming the type") {
  test::tiny_model_options o;
  o.add_extra = [](test::gguf_writer& w) { w.add_string("llama.rope.scaling.type", "yarn"); };
  CHECK(contains(refusal(o), "'yarn'"));
  o.add_extra = [](test::gguf_writer& w) {
    w.add_string("llama.rope.scaling.type", "linear");
    w.add_f32("llama.rope.scaling.factor", 4.0f);
  };
  CHECK(config_of(o).rope_freq_scale == 0.25f);
}

TEST_CASE("a value length other than the key length is refused") {
  test::tiny_model_options o;
  o.add_extra = [](test::gguf_writer& w) { w.add_u32("llama.attention.value_length", 32); };
  CHECK(contains(refusal(o), "value_length"));
}

TEST_CASE("tensors troupe's graph does not use are refused by name") {
  const auto f32_row = [](test::gguf_writer& w, const std::string& name, int64_t n) {
    w.add_tensor(name, ggml_type::f32, {n}, std::vector<std::byte>((size_t)n * 4));
  };
  SUBCASE("a bias a llama graph does not have") {
    test::tiny_model_options o;
    o.add_extra = [&](test::gguf_writer& w) { f32_row(w, "blk.0.attn_q.bias", 64); };
    CHECK(contains(refusal(o), "'blk.0.attn_q.bias'"));
  }
  SUBCASE("an output bias in qwen2") {
    auto o = qwen2();
    o.add_extra = [&](test::gguf_writer& w) { f32_row(w, "blk.1.attn_output.bias", 64); };
    CHECK(contains(refusal(o), "'blk.1.attn_output.bias'"));
  }
  SUBCASE("a layer past block_count") {
    test::tiny_model_options o;
    o.add_extra = [&](test::gguf_writer& w) { f32_row(w, "blk.2.attn_norm.weight", 64); };
    CHECK(contains(refusal(o), "'blk.2.attn_norm.weight'"));
  }
  SUBCASE("an unknown top-level tensor") {
    test::tiny_model_options o;
    o.add_extra = [&](test::gguf_writer& w) { f32_row(w, "token_types.weight", 64); };
    CHECK(contains(refusal(o), "'token_types.weight'"));
  }
  SUBCASE("rope frequency factors in a qwen2 file") {
    auto o = qwen2();
    o.add_extra = [&](test::gguf_writer& w) { f32_row(w, "rope_freqs.weight", 8); };
    CHECK(contains(refusal(o), "'rope_freqs.weight'"));
  }
}

TEST_CASE("a qwen2 file without a layer's bias is an invalid model naming the tensor") {
  auto o = qwen2();
  o.omit_tensor = "blk.1.attn_k.bias";
  CHECK(contains(refusal(o, error_code::invalid_model), "blk.1.attn_k.bias"));
}

TEST_CASE("rope_freqs of the wrong length or with a non-positive factor is an invalid model") {
  test::tiny_model_options o;
  o.add_extra = [](test::gguf_writer& w) {
    w.add_tensor("rope_freqs.weight", ggml_type::f32, {4}, std::vector<std::byte>(16));
  };
  CHECK(contains(refusal(o, error_code::invalid_model), "rope_freqs.weight"));
  o.add_extra = [](test::gguf_writer& w) {
    w.add_tensor("rope_freqs.weight", ggml_type::f32, {8}, std::vector<std::byte>(32));  // all zero
  };
  CHECK(contains(refusal(o, error_code::invalid_model), "rope_freqs.weight[0]"));
}
