// The vocabulary shared by the tokenizer's parts (internal to model/tokenizer*.cpp): token
// texts, scores and attributes, text -> id lookup, and the BPE merge table.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "troupe/model/pretokenizer.hpp"
#include "troupe/model/tokenizer.hpp"

namespace troupe::tokenizer_detail {

// Attribute bits as llama.cpp keeps them: the GGUF token type, plus `control` added to
// tokens it recognises as end-of-turn / FIM markers by their text.
enum attr : uint32_t {
  attr_unknown = 1 << 0,
  attr_unused = 1 << 1,
  attr_normal = 1 << 2,
  attr_control = 1 << 3,
  attr_user_defined = 1 << 4,
  attr_byte = 1 << 5,
};

struct token_entry {
  std::string text;
  float score = 0.0f;
  uint32_t attrs = attr_normal;
};

struct string_hash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

struct vocab {
  std::vector<token_entry> tokens;
  // Text -> id; when a text repeats, the last id wins (as in llama.cpp).
  std::unordered_map<std::string, int32_t, string_hash, std::equal_to<>> ids;

  int32_t find(std::string_view text) const {
    const auto it = ids.find(text);
    return it == ids.end() ? -1 : it->second;
  }
  int32_t size() const { return static_cast<int32_t>(tokens.size()); }
};

// BPE merges keyed by the pair of token ids; value = rank (index in tokenizer.ggml.merges)
// and the id of the merged text (-1 if the vocabulary lacks it).
struct bpe_merge {
  int32_t rank;
  int32_t merged_id;
};
struct bpe_model {
  std::unordered_map<uint64_t, bpe_merge> merges;
  std::array<int32_t, 256> byte_ids{};  // token of each byte's mapped code point, or -1
};

inline uint64_t merge_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// Byte-level BPE of one pre-tokenized piece (raw UTF-8 bytes, before the GPT-2 byte
// mapping). Appends the ids to out.
void bpe_encode_piece(const vocab& v, const bpe_model& model, std::string_view piece,
                      bool ignore_merges, std::vector<int32_t>& out);

// SentencePiece-style merging of a fragment whose spaces are already '▁'. Appends ids.
void spm_encode_fragment(const vocab& v, std::string_view text, int32_t unk_id,
                         std::vector<int32_t>& out);

// Everything from_gguf reads; immutable afterwards, so encode/decode are safe from any
// number of threads.
struct tokenizer_state {
  tokenizer_detail::vocab vocab;
  bool is_spm = false;
  bpe_model bpe;
  pre_tokenizer_info pre{};
  std::string model_name;
  std::string pre_name;

  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t eot_id = -1;
  int32_t eom_id = -1;
  int32_t unk_id = -1;
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;
  bool clean_spaces = false;

  std::vector<int32_t> special_ids;  // control, user-defined and unknown; longest text first
  std::vector<int32_t> eog_ids;      // ascending
  std::vector<std::string> pieces;   // token_to_piece with render_special, per id
};

}  // namespace troupe::tokenizer_detail

namespace troupe {
struct tokenizer::impl : tokenizer_detail::tokenizer_state {};
}  // namespace troupe
