// Builds the tiny llama GGUF: a BPE vocabulary learned from one fixed text, seeded random
// weights (deterministic on every platform: our own normal sampler), quantized by quantize.cpp.
#include "tests/util/tiny_model.hpp"

#include <cmath>
#include <cstdio>
#include <map>
#include <numbers>
#include <random>
#include <set>
#include <utility>

#include "troupe/model/error.hpp"
#include "tests/util/gguf_writer.hpp"
#include "tests/util/quantize.hpp"

namespace troupe::test {
namespace {

constexpr const char* training_text =
    "the quick brown fox jumps over the lazy dog and then the other dogs think that the fox is there "
    "with them while the cat sits on the mat in the sun and hello world this is the tiny model that "
    "the tests use to check the tokenizer and the model runs on the machine there";

std::string encode_utf8(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
  return out;
}

bool is_printable_byte(uint8_t b) { return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae; }

// Learns merges greedily: the most frequent adjacent pair (ties: the smallest pair) wins.
std::vector<std::pair<std::string, std::string>> learn_merges(int num_merges) {
  std::map<std::vector<std::string>, int> words;  // symbols of a word -> occurrences
  std::string word;
  const std::string text = training_text;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == ' ') {
      if (!word.empty()) {
        std::vector<std::string> symbols;
        for (char c : word) symbols.push_back(byte_to_symbol(static_cast<uint8_t>(c)));
        ++words[symbols];
      }
      word.clear();
      if (i != text.size()) word.push_back(' ');  // a space belongs to the word after it
    } else {
      word += text[i];
    }
  }
  std::vector<std::pair<std::string, std::string>> merges;
  while (static_cast<int>(merges.size()) < num_merges) {
    std::map<std::pair<std::string, std::string>, int> pair_counts;
    for (const auto& [symbols, count] : words) {
      for (size_t i = 0; i + 1 < symbols.size(); ++i) pair_counts[{symbols[i], symbols[i + 1]}] += count;
    }
    if (pair_counts.empty()) break;
    auto best = pair_counts.begin();
    for (auto it = pair_counts.begin(); it != pair_counts.end(); ++it) {
      if (it->second > best->second) best = it;
    }
    const auto pair = best->first;
    merges.push_back(pair);
    std::map<std::vector<std::string>, int> merged_words;
    for (const auto& [symbols, count] : words) {
      std::vector<std::string> next;
      for (size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && symbols[i] == pair.first && symbols[i + 1] == pair.second) {
          next.push_back(pair.first + pair.second);
          ++i;
        } else {
          next.push_back(symbols[i]);
        }
      }
      merged_words[next] += count;
    }
    words = std::move(merged_words);
  }
  return merges;
}

// Deterministic N(0, 1) samples (std::normal_distribution differs between standard libraries).
class normal_source {
 public:
  explicit normal_source(uint64_t seed) : engine_(seed) {}
  float next() {
    const double u1 = (static_cast<double>(engine_() >> 11) + 0.5) * 0x1.0p-53;
    const double u2 = static_cast<double>(engine_() >> 11) * 0x1.0p-53;
    return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2));
  }

 private:
  std::mt19937_64 engine_;
};

uint32_t file_type_of(ggml_type t) {
  switch (t) {
    case ggml_type::f32: return 0;
    case ggml_type::f16: return 1;
    case ggml_type::q4_0: return 2;
    case ggml_type::q4_1: return 3;
    case ggml_type::q8_0: return 7;
    case ggml_type::q5_0: return 8;
    case ggml_type::q5_1: return 9;
    case ggml_type::q4_k: return 15;
    case ggml_type::q5_k: return 17;
    case ggml_type::q6_k: return 18;
    case ggml_type::bf16: return 32;
    default: return 0;
  }
}

}  // namespace

std::string byte_to_symbol(uint8_t b) {
  if (is_printable_byte(b)) return encode_utf8(b);
  uint32_t rank = 0;  // how many non-printable bytes come before b
  for (int c = 0; c < b; ++c) rank += is_printable_byte(static_cast<uint8_t>(c)) ? 0 : 1;
  return encode_utf8(0x100 + rank);
}

tiny_vocab make_tiny_vocab(int num_merges) {
  tiny_vocab v;
  for (const char* special : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    v.tokens.push_back(special);
    v.token_types.push_back(3);
  }
  std::set<std::string> known;
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back(byte_to_symbol(static_cast<uint8_t>(b)));
    v.token_types.push_back(1);
    known.insert(v.tokens.back());
  }
  for (const auto& [a, b] : learn_merges(num_merges)) {
    v.merges.push_back(a + " " + b);
    if (known.insert(a + b).second) {
      v.tokens.push_back(a + b);
      v.token_types.push_back(1);
    }
  }
  return v;
}

std::vector<std::byte> make_tiny_llama(const tiny_model_options& o) {
  if (o.num_layers < 1 || o.num_heads < 1 || o.num_kv_heads < 1 || o.num_heads % o.num_kv_heads != 0 ||
      (o.head_dim == 0 && o.embedding_dim % o.num_heads != 0) || o.head_dim < 0 || o.ffn_dim < 1) {
    throw error(error_code::invalid_argument, "tiny model: inconsistent layer or head counts");
  }
  const bool is_llama = o.architecture == "llama";
  const bool has_qkv_bias = o.architecture == "qwen2";
  const bool has_qk_norm = o.architecture == "qwen3";
  if (!is_llama && !has_qkv_bias && !has_qk_norm) {
    throw error(error_code::invalid_argument, "tiny model: architecture must be llama, qwen2 or qwen3");
  }
  const tiny_vocab vocab = make_tiny_vocab(o.num_merges);
  const int64_t num_tokens = static_cast<int64_t>(vocab.tokens.size());
  const int64_t head_dim = o.head_dim > 0 ? o.head_dim : o.embedding_dim / o.num_heads;
  const int64_t q_dim = head_dim * o.num_heads;
  const int64_t kv_dim = head_dim * o.num_kv_heads;

  gguf_writer w;
  const std::string a = o.architecture + ".";
  w.add_string("general.architecture", o.architecture);
  w.add_string("general.name", "tiny-" + o.architecture);
  w.add_u32("general.file_type", file_type_of(o.weight_type));
  w.add_u32("general.quantization_version", 2);
  w.add_u32(a + "context_length", static_cast<uint32_t>(o.context_length));
  w.add_u32(a + "embedding_length", static_cast<uint32_t>(o.embedding_dim));
  w.add_u32(a + "block_count", static_cast<uint32_t>(o.num_layers));
  w.add_u32(a + "feed_forward_length", static_cast<uint32_t>(o.ffn_dim));
  w.add_u32(a + "attention.head_count", static_cast<uint32_t>(o.num_heads));
  w.add_u32(a + "attention.head_count_kv", static_cast<uint32_t>(o.num_kv_heads));
  if (o.head_dim > 0) {
    w.add_u32(a + "attention.key_length", static_cast<uint32_t>(head_dim));
    w.add_u32(a + "attention.value_length", static_cast<uint32_t>(head_dim));
  }
  if (is_llama) w.add_u32(a + "rope.dimension_count", static_cast<uint32_t>(head_dim));
  w.add_f32(a + "rope.freq_base", o.rope_freq_base);
  w.add_f32(a + "attention.layer_norm_rms_epsilon", o.rms_eps);
  if (is_llama) w.add_u32(a + "vocab_size", static_cast<uint32_t>(num_tokens));
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", "smollm");
  w.add_strings("tokenizer.ggml.tokens", vocab.tokens);
  w.add_i32s("tokenizer.ggml.token_type", vocab.token_types);
  w.add_strings("tokenizer.ggml.merges", vocab.merges);
  w.add_u32("tokenizer.ggml.bos_token_id", 1);
  w.add_u32("tokenizer.ggml.eos_token_id", 2);
  w.add_u32("tokenizer.ggml.padding_token_id", 2);
  w.add_bool("tokenizer.ggml.add_bos_token", false);
  w.add_string("tokenizer.chat_template", o.chat_template);

  normal_source normal(o.seed);
  std::map<std::string, std::vector<std::byte>> first_layer;  // repeat_first_layer: blk.0's tensors
  // A [ne0, ne1] tensor of N(0, stddev) values (plus `mean`), stored as `type`.
  const auto add = [&](const std::string& name, ggml_type type, int64_t ne0, int64_t ne1, float stddev,
                       float mean = 0) {
    const auto traits = traits_of(type);
    if (ne0 % traits.block_elements != 0) {
      throw error(error_code::invalid_argument, "tiny model: " + name + " has rows of " + std::to_string(ne0) +
                                                    " values, not a whole number of " +
                                                    std::string(traits.name) + " blocks");
    }
    std::vector<int64_t> dims{ne0};
    if (ne1 != 1) dims.push_back(ne1);
    if (o.repeat_first_layer && name.rfind("blk.", 0) == 0 && name.rfind("blk.0.", 0) != 0) {
      const std::string first = "blk.0." + name.substr(name.find('.', 4) + 1);
      if (name != o.omit_tensor) w.add_tensor(name, type, dims, first_layer.at(first));
      return;
    }
    std::vector<float> values(static_cast<size_t>(ne0 * ne1));
    for (float& x : values) x = mean + stddev * normal.next();
    auto bytes = quantize(type, values);
    if (o.repeat_first_layer && name.rfind("blk.0.", 0) == 0) first_layer[name] = bytes;
    if (name != o.omit_tensor) w.add_tensor(name, type, dims, std::move(bytes));
  };
  // Projections scaled by 1/sqrt(fan_in) keep activations near unit size through the layers.
  const auto matrix_stddev = [](int64_t fan_in) { return 0.5f / std::sqrt(static_cast<float>(fan_in)); };

  const int64_t e = o.embedding_dim;
  add("token_embd.weight", o.embedding_type, e, num_tokens, 0.3f);
  if (o.has_rope_freq_factors) {  // llama 3.x's shape: 1 for high frequencies rising to 8 for low ones
    std::vector<float> factors(static_cast<size_t>(head_dim / 2));
    for (size_t i = 0; i < factors.size(); ++i) factors[i] = 1.0f + 7.0f * (float)i / (float)(factors.size() - 1);
    w.add_tensor("rope_freqs.weight", ggml_type::f32, {head_dim / 2}, quantize(ggml_type::f32, factors));
  }
  for (int layer = 0; layer < o.num_layers; ++layer) {
    const std::string p = "blk." + std::to_string(layer) + ".";
    add(p + "attn_norm.weight", ggml_type::f32, e, 1, 0.05f, 1.0f);
    add(p + "attn_q.weight", o.weight_type, e, q_dim, matrix_stddev(e));
    add(p + "attn_k.weight", o.weight_type, e, kv_dim, matrix_stddev(e));
    add(p + "attn_v.weight", o.weight_type, e, kv_dim, matrix_stddev(e));
    if (has_qkv_bias) {  // large enough to move the logits well past the tolerance if dropped
      add(p + "attn_q.bias", ggml_type::f32, q_dim, 1, 0.5f);
      add(p + "attn_k.bias", ggml_type::f32, kv_dim, 1, 0.5f);
      add(p + "attn_v.bias", ggml_type::f32, kv_dim, 1, 0.5f);
    }
    if (has_qk_norm) {
      add(p + "attn_q_norm.weight", ggml_type::f32, head_dim, 1, 0.3f, 1.0f);
      add(p + "attn_k_norm.weight", ggml_type::f32, head_dim, 1, 0.3f, 1.0f);
    }
    add(p + "attn_output.weight", o.weight_type, q_dim, e, matrix_stddev(q_dim));
    add(p + "ffn_norm.weight", ggml_type::f32, e, 1, 0.05f, 1.0f);
    add(p + "ffn_gate.weight", o.weight_type, e, o.ffn_dim, matrix_stddev(e));
    add(p + "ffn_up.weight", o.weight_type, e, o.ffn_dim, matrix_stddev(e));
    add(p + "ffn_down.weight", o.weight_type, o.ffn_dim, e, matrix_stddev(o.ffn_dim));
  }
  add("output_norm.weight", ggml_type::f32, e, 1, 0.05f, 1.0f);
  if (!o.tied_output) add("output.weight", o.embedding_type, e, num_tokens, 0.3f);
  if (o.add_extra) o.add_extra(w);
  return w.bytes();
}

void write_tiny_llama(const std::string& path, const tiny_model_options& options) {
  const auto image = make_tiny_llama(options);
  FILE* f = std::fopen(path.c_str(), "wb");
  const bool ok = f != nullptr && std::fwrite(image.data(), 1, image.size(), f) == image.size();
  if (f != nullptr && std::fclose(f) != 0) throw error(error_code::io_error, "cannot write " + path);
  if (!ok) throw error(error_code::io_error, "cannot write " + path);
}

}  // namespace troupe::test
