// Tokenizer read from GGUF metadata: byte-level BPE (tokenizer.ggml.model "gpt2", with the
// pre-tokenizer split named by tokenizer.ggml.pre) and SentencePiece-style ("llama").
// Matches llama.cpp's llama_tokenize / llama_token_to_piece / llama_detokenize; checked
// against llama.cpp by tests/data/tokenizer_golden.json. Immutable after from_gguf, so every
// const member may be called from any number of threads at once.
//
// Pre-tokenizers: smollm/starcoder/refact/command-r/codeshell, gpt-2, llama3/llama-bpe,
// qwen2, and llama.cpp's "default" (also used when tokenizer.ggml.pre is absent). A name
// llama.cpp does not know (it refuses such files) is tokenized with the gpt-2 split,
// silently; pre_name() still reports the name from the file.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "troupe/model/gguf.hpp"

namespace troupe {

enum class token_kind : int32_t {
  undefined = 0, normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6,
};

class tokenizer {
 public:
  // Throws troupe::error(invalid_model / unsupported) naming the key at fault: missing or
  // mistyped tokens, a merge naming a token outside the vocabulary, a special token id
  // outside the vocabulary, add_bos/add_eos without the token.
  static tokenizer from_gguf(const gguf::file& file);

  tokenizer(tokenizer&&) noexcept;
  tokenizer& operator=(tokenizer&&) noexcept;
  ~tokenizer();

  // add_special: add BOS (and EOS) as the model's metadata asks. parse_special: recognise
  // control / user-defined token texts in the input (chat templates need it; user text
  // should usually not).
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

  // The bytes a token stands for (byte-level BPE decoded, SentencePiece '▁' -> ' ', <0xXX>
  // -> that byte); may be part of a UTF-8 character. Control and unknown tokens give their
  // text only when render_special; user-defined tokens always give it. Throws
  // invalid_argument for an id outside the vocabulary.
  std::string token_to_piece(int32_t id, bool render_special) const;
  // llama_detokenize(remove_special = false): the pieces concatenated, less the leading
  // space of the first piece when the model prefixes one (SentencePiece), then llama.cpp's
  // clean-up of " ." / " 's" style spaces for the pre-tokenizers that ask for it (gpt-2,
  // llama3, default; not smollm or qwen2). Raw bytes, not necessarily valid UTF-8.
  std::string decode(std::span<const int32_t> ids, bool render_special) const;

  int32_t vocab_size() const;
  // The GGUF token type, except that tokens llama.cpp recognises by text as end-of-turn or
  // FIM markers report control (as llama.cpp then treats them).
  token_kind kind(int32_t id) const;
  const std::string& token_text(int32_t id) const;  // as stored in the vocabulary
  int32_t bos_id() const;                           // -1 if none
  int32_t eos_id() const;                           // -1 if none
  bool adds_bos() const;
  // End-of-generation ids, ascending: EOS, EOT, EOM, FIM pad/repo/file-separator tokens,
  // and every token whose text is a known end-of-turn marker (<|im_end|>, <|eot_id|>,
  // <|endoftext|>, </s>, <end_of_turn>, ...), as llama_vocab_is_eog. SmolLM2: {0, 2, 4}.
  const std::vector<int32_t>& eog_ids() const;
  bool is_eog(int32_t id) const;
  std::string_view model_name() const;              // "gpt2" or "llama"
  std::string_view pre_name() const;                // tokenizer.ggml.pre

 private:
  tokenizer();
  struct impl;
  std::unique_ptr<impl> impl_;
};

// Turns a stream of token ids into text that never ends in half a UTF-8 character: bytes
// of an incomplete character are held until the next token completes them.
class incremental_decoder {
 public:
  explicit incremental_decoder(const tokenizer& tok, bool render_special = false);
  std::string push(int32_t id);  // text completed by this token (may be empty)
  std::string flush();           // whatever is held back; invalid bytes become U+FFFD

 private:
  const tokenizer* tok_;
  bool render_special_;
  std::string pending_;
};

}  // namespace troupe
