// grammar_matcher: one sequence's progress through a grammar. It accepts sampled tokens,
// fills the mask of tokens allowed next, says when the output is complete, rolls back for
// speculative decoding and copies for n > 1 sequences. Not thread-safe (one per sequence);
// the grammar_masks it shares with the other matchers is.
//
//   auto masks = std::make_shared<grammar_masks>(compile_grammar(spec), trie);
//   grammar_matcher m(masks);
//   m.fill_mask(mask);  apply_token_mask(mask, logits);  ... sample id ...
//   m.accept_token(id);  // after an end-of-generation id, m.is_finished()
#pragma once
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "troupe/grammar/grammar_masks.hpp"
#include "troupe/grammar/stepper.hpp"
#include "troupe/grammar/token_bitset.hpp"

namespace troupe {

class grammar_matcher {
 public:
  explicit grammar_matcher(std::shared_ptr<const grammar_masks> masks);
  // A copy is an independent matcher at the same point (a fork for another sequence).
  grammar_matcher(const grammar_matcher& other);
  grammar_matcher& operator=(const grammar_matcher& other);

  // Takes the token if the grammar allows it next and returns true; otherwise returns
  // false and changes nothing. An end-of-generation id is allowed exactly when
  // is_accepting(), and finishes the matcher. Throws invalid_argument for an id outside
  // the vocabulary.
  bool accept_token(int32_t id);
  // The same for raw bytes (forced text, tests); counts as one step for rollback.
  bool accept_bytes(std::string_view bytes);

  // The tokens allowed next; `out` is resized to the vocabulary. Once finished, or when the
  // output is complete and nothing may follow, only the end-of-generation ids.
  void fill_mask(token_bitset& out);
  token_bitset next_mask();
  // The same by trying every token (slow): for tests.
  token_bitset next_mask_by_brute_force();

  // The output so far is a complete value: end-of-generation ids are allowed.
  bool is_accepting() const { return !is_finished() && current().config.can_end; }
  // The output is complete and no byte may follow.
  bool is_terminated() const { return is_finished() || current().config.positions.empty(); }
  // An end-of-generation id was accepted.
  bool is_finished() const { return current().is_finished; }

  // Undoes the last num_steps accepted tokens (or accept_bytes calls). Throws
  // invalid_argument for more than num_steps().
  void rollback(size_t num_steps);
  size_t num_steps() const { return history_.size() - 1; }

  const grammar_masks& masks() const { return *masks_; }

 private:
  struct step_state {
    grammar_internal::configuration config;
    bool is_finished = false;
  };
  const step_state& current() const { return history_.back(); }

  std::shared_ptr<const grammar_masks> masks_;
  grammar_internal::stack_arena arena_;
  grammar_internal::stepper stepper_;
  std::vector<step_state> history_;
  grammar_internal::configuration scratch_a_, scratch_b_;
};

}  // namespace troupe
