// Tokenizer read from GGUF metadata: byte-level BPE (tokenizer.ggml.model "gpt2", with the
// pre-tokenizer split named by tokenizer.ggml.pre) and SentencePiece-style ("llama").
// Matches llama.cpp's llama_tokenize / llama_token_to_piece.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/gguf.hpp"

namespace troupe {

enum class token_kind : int32_t {
  undefined = 0, normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6,
};

class tokenizer {
 public:
  // Throws troupe::error(invalid_model / unsupported) naming the key at fault.
  static tokenizer from_gguf(const gguf::file& file);

  tokenizer(tokenizer&&) noexcept;
  tokenizer& operator=(tokenizer&&) noexcept;
  ~tokenizer();

  // add_special: add BOS (and EOS) as the model's metadata asks. parse_special: recognise
  // control / user-defined token texts in the input (chat templates need it; user text
  // should usually not).
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

  // The bytes a token stands for (byte-level BPE decoded, SentencePiece '▁' -> ' ', <0xXX>
  // -> that byte). Control tokens give their text only when render_special.
  std::string token_to_piece(int32_t id, bool render_special) const;
  std::string decode(std::span<const int32_t> ids, bool render_special) const;

  int32_t vocab_size() const;
  token_kind kind(int32_t id) const;
  const std::string& token_text(int32_t id) const;  // as stored in the vocabulary
  int32_t bos_id() const;                           // -1 if none
  int32_t eos_id() const;                           // -1 if none
  bool adds_bos() const;
  const std::vector<int32_t>& eog_ids() const;      // end-of-generation set (EOS, EOT, ...)
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
