// The structured-output front end: what a request asks for (grammar_spec), compiled once
// into a grammar, and a bounded, thread-safe cache of compiled grammars bound to one
// model's vocabulary, so that requests with the same schema share the grammar and its
// mask caches. docs/structured-output.md says what each kind supports and refuses.
#pragma once
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "troupe/grammar/grammar.hpp"
#include "troupe/grammar/grammar_masks.hpp"
#include "troupe/grammar/token_trie.hpp"

namespace troupe {

enum class grammar_kind {
  json_object,  // response_format {"type": "json_object"}: any JSON object
  json_schema,  // response_format json_schema: text is the schema
  regex,        // guided_regex: text is the pattern, matched in full
  choice,       // guided_choice: exactly one of `choices`
};

const char* to_string(grammar_kind kind);

struct grammar_spec {
  grammar_kind kind = grammar_kind::json_object;
  std::string text;
  std::vector<std::string> choices;
  // Whitespace allowed between JSON tokens, per gap (JSON kinds only).
  int max_whitespace_bytes = 8;
  bool operator==(const grammar_spec&) const = default;
};

// Throws troupe::error(invalid_argument) naming what is wrong or unsupported, e.g.
// `unsupported JSON Schema keyword "patternProperties" at $.properties.a`.
std::shared_ptr<const grammar> compile_grammar(const grammar_spec& spec);

// The same, per kind.
std::shared_ptr<const grammar> compile_json_schema(std::string_view schema, int max_whitespace_bytes);
std::shared_ptr<const grammar> compile_json_object(int max_whitespace_bytes);
std::shared_ptr<const grammar> compile_regex(std::string_view pattern);
std::shared_ptr<const grammar> compile_choice(const std::vector<std::string>& choices);

// Compiled grammars bound to one vocabulary, keyed by the whole spec (kind, text,
// choices, whitespace bound), least recently used dropped past `capacity`. Thread-safe;
// a failed compile is not cached (the next request gets the same error again).
class grammar_cache {
 public:
  grammar_cache(std::shared_ptr<const token_trie> vocab, size_t capacity = 64);

  std::shared_ptr<const grammar_masks> get(const grammar_spec& spec);

  size_t size() const;
  uint64_t num_hits() const;
  uint64_t num_compiles() const;

 private:
  static std::string key_of(const grammar_spec& spec);

  std::shared_ptr<const token_trie> vocab_;
  size_t capacity_;
  mutable std::mutex mutex_;
  std::list<std::pair<std::string, std::shared_ptr<const grammar_masks>>> lru_;
  std::unordered_map<std::string, decltype(lru_)::iterator> index_;
  uint64_t num_hits_ = 0;
  uint64_t num_compiles_ = 0;
};

}  // namespace troupe
