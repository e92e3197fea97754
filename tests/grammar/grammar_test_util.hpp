// Helpers for the grammar tests: a byte vocabulary (one token per byte, plus an
// end-of-generation and a control token), whole-text acceptance, and the JSON Schema cases
// shared by the byte-level tests and the random walks over a real vocabulary.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "troupe/grammar/compile.hpp"
#include "troupe/grammar/matcher.hpp"

namespace troupe::test {

inline constexpr int32_t byte_vocab_eog = 256;
inline constexpr int32_t byte_vocab_control = 257;

inline std::shared_ptr<const token_trie> byte_vocab() {
  static const std::shared_ptr<const token_trie> vocab = [] {
    std::vector<std::string> pieces;
    std::vector<bool> is_text;
    for (int b = 0; b < 256; ++b) {
      pieces.emplace_back(1, static_cast<char>(b));
      is_text.push_back(true);
    }
    pieces.emplace_back("</s>");
    is_text.push_back(false);
    pieces.emplace_back("<|control|>");
    is_text.push_back(false);
    return std::make_shared<const token_trie>(pieces, is_text, std::vector<int32_t>{byte_vocab_eog});
  }();
  return vocab;
}

inline grammar_matcher byte_matcher(std::shared_ptr<const grammar> g) {
  return grammar_matcher(std::make_shared<const grammar_masks>(std::move(g), byte_vocab()));
}

// The whole text is a complete output of the grammar.
inline bool accepts(const std::shared_ptr<const grammar>& g, std::string_view text) {
  grammar_matcher m = byte_matcher(g);
  return m.accept_bytes(text) && m.is_accepting();
}

struct schema_case {
  const char* name;
  const char* schema;
  std::vector<std::string> valid;
  std::vector<std::string> invalid;
};

const std::vector<schema_case>& schema_cases();

}  // namespace troupe::test
