// Pre-tokenizer splits for byte-level BPE, hand-written over code points to reproduce
// llama.cpp's unicode_regex_split for the regex lists it uses per tokenizer.ggml.pre.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace troupe {

enum class pre_tokenizer {
  gpt2,          // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  starcoder,     // \p{N} alone first, then gpt2 ("smollm", "starcoder", "refact", ...)
  llama3,        // (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|...
  qwen2,         // llama3 with \p{N} instead of \p{N}{1,3}
  llama_default, // llama.cpp's "default" list: punctuation runs, gpt2, \p{N}+, [0-9]{3}
};

struct pre_tokenizer_info {
  pre_tokenizer kind;
  bool is_known;        // false: the name was not recognised and gpt2 is used
  bool clean_spaces;    // llama.cpp's clean_up_tokenization_spaces for this pre type
  bool ignore_merges;   // a piece that is itself a token is emitted without merging
  bool adds_bos;        // the pre type's default for tokenizer.ggml.add_bos_token
};

// Maps tokenizer.ggml.pre to a split. An empty name means llama.cpp's "default". Names
// llama.cpp does not know (it refuses to load them) fall back to gpt2, flagged !is_known.
pre_tokenizer_info pre_tokenizer_from_name(std::string_view name);

// Splits code points into pieces; returns each piece's length in code points, in order.
std::vector<size_t> pre_tokenize(pre_tokenizer kind, std::span<const uint32_t> cpts);

}  // namespace troupe
