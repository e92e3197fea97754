// A set of token ids as bits (one per vocabulary entry): the allowed-token mask a grammar
// matcher fills for the next step, and the helper that applies it to a row of logits.
#pragma once
#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace troupe {

class token_bitset {
 public:
  token_bitset() = default;
  explicit token_bitset(int32_t num_tokens)
      : words_((static_cast<size_t>(num_tokens) + 63) / 64, 0), num_tokens_(num_tokens) {}

  int32_t size() const { return num_tokens_; }
  bool test(int32_t id) const { return (words_[id >> 6] >> (id & 63)) & 1; }
  void set(int32_t id) { words_[id >> 6] |= uint64_t{1} << (id & 63); }
  void reset(int32_t id) { words_[id >> 6] &= ~(uint64_t{1} << (id & 63)); }
  void clear() { std::fill(words_.begin(), words_.end(), 0); }
  void merge(const token_bitset& other) {
    for (size_t i = 0; i < words_.size(); ++i) words_[i] |= other.words_[i];
  }
  int32_t count() const {
    int32_t n = 0;
    for (const uint64_t w : words_) n += std::popcount(w);
    return n;
  }
  std::span<const uint64_t> words() const { return words_; }
  std::span<uint64_t> words() { return words_; }
  bool operator==(const token_bitset&) const = default;

  // Calls f(id) for every set id, ascending.
  template <class F>
  void for_each(F&& f) const {
    for (size_t w = 0; w < words_.size(); ++w) {
      for (uint64_t bits = words_[w]; bits != 0; bits &= bits - 1) {
        f(static_cast<int32_t>(w * 64 + std::countr_zero(bits)));
      }
    }
  }

 private:
  std::vector<uint64_t> words_;
  int32_t num_tokens_ = 0;
};

// Sets every logit whose token is not in `allowed` to -infinity. Logits past the mask's
// size (a model whose output row is wider than its vocabulary) are disallowed too.
inline void apply_token_mask(const token_bitset& allowed, std::span<float> logits) {
  const float minus_inf = -std::numeric_limits<float>::infinity();
  const size_t n = logits.size();
  const size_t num_masked = std::min(n, static_cast<size_t>(allowed.size()));
  const std::span<const uint64_t> words = allowed.words();
  for (size_t base = 0; base < num_masked; base += 64) {
    const uint64_t bits = words[base / 64];
    const size_t end = std::min(num_masked, base + 64);
    if (bits == 0) {
      std::fill(logits.begin() + base, logits.begin() + end, minus_inf);
    } else if (bits != ~uint64_t{0}) {
      for (size_t i = base; i < end; ++i) {
        if (!((bits >> (i - base)) & 1)) logits[i] = minus_inf;
      }
    }
  }
  std::fill(logits.begin() + num_masked, logits.end(), minus_inf);
}

}  // namespace troupe
