// A tiny llama-family GGUF (llama, qwen2 or qwen3) for fast unit tests: random small weights in any test-
// quantizable type plus a byte-level BPE vocabulary (gpt2/smollm style) and a ChatML template.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tests/util/gguf_writer.hpp"
#include "troupe/model/quant.hpp"

namespace troupe::test {

struct tiny_model_options {
  // llama, qwen2 (q/k/v biases, NEOX rotation, no rope.dimension_count or vocab_size keys)
  // or qwen3 (per-head q/k norms, NEOX rotation, head_dim from attention.key_length).
  std::string architecture = "llama";
  int head_dim = 0;                  // 0: embedding_dim / num_heads; else written as key_length
  bool has_rope_freq_factors = false;  // write a rope_freqs.weight of factors in [1, 8]
  std::string omit_tensor;           // a tensor name not to write, for the loader's refusals
  std::function<void(gguf_writer&)> add_extra;  // more keys or tensors, written last
  ggml_type weight_type = ggml_type::q4_1;     // attention and FFN matrices
  ggml_type embedding_type = ggml_type::q8_0;  // token_embd, and output.weight when untied
  bool tied_output = true;                     // false: write a separate output.weight
  int num_layers = 2;
  int embedding_dim = 64;
  int num_heads = 4;
  int num_kv_heads = 2;
  int ffn_dim = 128;
  int context_length = 256;
  float rope_freq_base = 10000;
  float rms_eps = 1e-5f;
  int num_merges = 64;  // BPE merges learned from the built-in sentence
  uint64_t seed = 1;
  // Layers after the first store the first layer's weights again (bytes copied, not drawn
  // and quantized anew): large models for speed measurements in seconds, not minutes.
  bool repeat_first_layer = false;
  std::string chat_template =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
      "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
};

// The vocabulary written into the tiny model: ids 0..2 are <|endoftext|>, <|im_start|> (BOS)
// and <|im_end|> (EOS), 3..258 the byte-level symbols in byte order, then merged tokens.
struct tiny_vocab {
  std::vector<std::string> tokens;  // byte-level encoded ("Ġthe")
  std::vector<int32_t> token_types;  // 3 control, 1 normal
  std::vector<std::string> merges;  // "a b", highest priority first
};

// GPT-2's byte-to-symbol mapping: the UTF-8 text of the symbol that stands for byte b.
std::string byte_to_symbol(uint8_t b);

tiny_vocab make_tiny_vocab(int num_merges = 64);

// The GGUF image; throws troupe::error(invalid_argument) for inconsistent options (e.g. a
// dimension that is not a whole number of blocks of the requested type).
std::vector<std::byte> make_tiny_llama(const tiny_model_options& options = {});
void write_tiny_llama(const std::string& path, const tiny_model_options& options = {});

}  // namespace troupe::test
