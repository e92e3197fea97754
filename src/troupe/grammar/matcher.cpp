// grammar_matcher: a history of configurations over one stack arena.
#include "troupe/grammar/matcher.hpp"

#include <string>

#include "troupe/model/error.hpp"

namespace troupe {

grammar_matcher::grammar_matcher(std::shared_ptr<const grammar_masks> masks)
    : masks_(std::move(masks)), stepper_(masks_->automaton(), arena_) {
  history_.emplace_back();
  stepper_.start(history_.back().config);
}

grammar_matcher::grammar_matcher(const grammar_matcher& other)
    : masks_(other.masks_), arena_(other.arena_), stepper_(masks_->automaton(), arena_),
      history_(other.history_) {}

grammar_matcher& grammar_matcher::operator=(const grammar_matcher& other) {
  if (this != &other) {
    masks_ = other.masks_;
    arena_ = other.arena_;
    stepper_ = grammar_internal::stepper(masks_->automaton(), arena_);
    history_ = other.history_;
  }
  return *this;
}

bool grammar_matcher::accept_token(int32_t id) {
  const token_trie& vocab = masks_->vocab();
  if (id < 0 || id >= vocab.vocab_size()) {
    throw error(error_code::invalid_argument, "grammar_matcher: token id " + std::to_string(id) +
                                                  " is outside the vocabulary of " +
                                                  std::to_string(vocab.vocab_size()));
  }
  if (is_finished()) return false;
  if (vocab.is_eog(id)) {
    if (!current().config.can_end) return false;
    history_.push_back({{}, true});
    return true;
  }
  if (!vocab.is_text(id)) return false;
  return accept_bytes(vocab.piece(id));
}

bool grammar_matcher::accept_bytes(std::string_view bytes) {
  if (is_finished()) return false;
  scratch_a_ = current().config;
  for (const char c : bytes) {
    if (!stepper_.advance(scratch_a_, static_cast<uint8_t>(c), scratch_b_)) return false;
    std::swap(scratch_a_, scratch_b_);
  }
  history_.push_back({scratch_a_, false});
  return true;
}

void grammar_matcher::fill_mask(token_bitset& out) {
  const token_trie& vocab = masks_->vocab();
  if (out.size() != vocab.vocab_size()) out = token_bitset(vocab.vocab_size());
  if (is_finished()) {
    out.clear();
    for (const int32_t id : vocab.eog_ids()) out.set(id);
    return;
  }
  out = *masks_->mask(current().config, arena_);
}

token_bitset grammar_matcher::next_mask() {
  token_bitset out;
  fill_mask(out);
  return out;
}

token_bitset grammar_matcher::next_mask_by_brute_force() {
  if (is_finished()) return next_mask();
  return masks_->mask_by_brute_force(current().config, arena_);
}

void grammar_matcher::rollback(size_t num_steps) {
  if (num_steps > this->num_steps()) {
    throw error(error_code::invalid_argument, "grammar_matcher: cannot roll back " +
                                                  std::to_string(num_steps) + " steps, only " +
                                                  std::to_string(this->num_steps()) + " were taken");
  }
  history_.resize(history_.size() - num_steps);
}

}  // namespace troupe
