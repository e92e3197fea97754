// compile_grammar for each kind, and the compiled-grammar cache.
#include "troupe/grammar/compile.hpp"

#include "troupe/grammar/json_rules.hpp"
#include "troupe/grammar/regex.hpp"
#include "troupe/model/error.hpp"

namespace troupe {

const char* to_string(grammar_kind kind) {
  switch (kind) {
    case grammar_kind::json_object: return "json_object";
    case grammar_kind::json_schema: return "json_schema";
    case grammar_kind::regex: return "regex";
    case grammar_kind::choice: return "choice";
  }
  return "?";
}

namespace {

void check_whitespace(int max_whitespace_bytes) {
  if (max_whitespace_bytes < 0 || max_whitespace_bytes > 64) {
    throw error(error_code::invalid_argument, "max_whitespace_bytes must be within 0..64, not " +
                                                  std::to_string(max_whitespace_bytes));
  }
}

}  // namespace

std::shared_ptr<const grammar> compile_json_object(int max_whitespace_bytes) {
  check_whitespace(max_whitespace_bytes);
  grammar_builder builder;
  grammar_internal::json_rules json(builder, max_whitespace_bytes);
  return builder.build(json.object_rule());
}

std::shared_ptr<const grammar> compile_regex(std::string_view pattern) {
  const auto re = grammar_internal::regex::parse(pattern, "guided_regex");
  grammar_builder builder;
  const uint32_t rule = builder.declare_rule("guided_regex");
  builder.define_rule(rule, re.build(builder.automaton(), false));
  return builder.build(rule);
}

std::shared_ptr<const grammar> compile_choice(const std::vector<std::string>& choices) {
  if (choices.empty()) throw error(error_code::invalid_argument, "guided_choice is an empty list");
  grammar_builder builder;
  auto& a = builder.automaton();
  std::vector<grammar_internal::fragment> options;
  for (const std::string& c : choices) options.push_back(a.literal(c));
  const uint32_t rule = builder.declare_rule("guided_choice");
  builder.define_rule(rule, a.alternatives(options));
  return builder.build(rule);
}

std::shared_ptr<const grammar> compile_grammar(const grammar_spec& spec) {
  switch (spec.kind) {
    case grammar_kind::json_object: return compile_json_object(spec.max_whitespace_bytes);
    case grammar_kind::json_schema:
      check_whitespace(spec.max_whitespace_bytes);
      return compile_json_schema(spec.text, spec.max_whitespace_bytes);
    case grammar_kind::regex: return compile_regex(spec.text);
    case grammar_kind::choice: return compile_choice(spec.choices);
  }
  throw error(error_code::invalid_argument, "unknown grammar kind");
}

grammar_cache::grammar_cache(std::shared_ptr<const token_trie> vocab, size_t capacity)
    : vocab_(std::move(vocab)), capacity_(capacity) {}

std::string grammar_cache::key_of(const grammar_spec& spec) {
  // Lengths before texts, so that no two specs share a key.
  std::string key;
  auto add = [&key](std::string_view part) {
    key += std::to_string(part.size());
    key += ':';
    key += part;
  };
  add(to_string(spec.kind));
  add(std::to_string(spec.max_whitespace_bytes));
  add(spec.text);
  for (const std::string& c : spec.choices) add(c);
  return key;
}

std::shared_ptr<const grammar_masks> grammar_cache::get(const grammar_spec& spec) {
  std::string key = key_of(spec);
  {
    std::lock_guard lock(mutex_);
    if (const auto it = index_.find(key); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      ++num_hits_;
      return it->second->second;
    }
  }
  // Compiled outside the lock: a large schema must not hold up other requests' lookups.
  auto masks = std::make_shared<const grammar_masks>(compile_grammar(spec), vocab_);
  std::lock_guard lock(mutex_);
  ++num_compiles_;
  if (const auto it = index_.find(key); it != index_.end()) return it->second->second;
  lru_.emplace_front(key, masks);
  index_.emplace(std::move(key), lru_.begin());
  while (lru_.size() > capacity_) {
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return masks;
}

size_t grammar_cache::size() const {
  std::lock_guard lock(mutex_);
  return lru_.size();
}

uint64_t grammar_cache::num_hits() const {
  std::lock_guard lock(mutex_);
  return num_hits_;
}

uint64_t grammar_cache::num_compiles() const {
  std::lock_guard lock(mutex_);
  return num_compiles_;
}

}  // namespace troupe
