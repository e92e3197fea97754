// ngram_proposer: a backwards scan for the latest earlier occurrence of the sequence's
// suffix, longest suffix first.
#include "troupe/engine/proposer.hpp"

#include <algorithm>

#include "troupe/model/error.hpp"

namespace troupe {

const char* to_string(speculative_method m) {
  switch (m) {
    case speculative_method::off: return "off";
    case speculative_method::ngram: return "ngram";
    case speculative_method::draft: return "draft";
  }
  return "off";
}

speculative_method parse_speculative_method(const std::string& text) {
  if (text == "off") return speculative_method::off;
  if (text == "ngram") return speculative_method::ngram;
  if (text == "draft") return speculative_method::draft;
  throw error(error_code::invalid_argument,
              "speculative method must be \"ngram\", \"draft\" or \"off\", got \"" + text + "\"");
}

ngram_proposer::ngram_proposer(int32_t min_n, int32_t max_n) : min_n_(min_n), max_n_(max_n) {
  if (min_n < 1 || max_n < min_n || max_n > 64) {
    throw error(error_code::invalid_argument, "n-gram sizes must satisfy 1 <= min <= max <= 64, got min " +
                                                  std::to_string(min_n) + ", max " + std::to_string(max_n));
  }
}

void ngram_proposer::propose(std::span<const int32_t> tokens, int32_t max_tokens, std::vector<int32_t>& out) const {
  out.clear();
  const auto size = static_cast<int64_t>(tokens.size());
  if (max_tokens <= 0) return;
  for (int64_t n = std::min<int64_t>(max_n_, size - 1); n >= min_n_; --n) {
    const auto suffix = tokens.last(static_cast<size_t>(n));
    // An occurrence ending before the suffix's own start; the latest one wins.
    for (int64_t start = size - n - 1; start >= 0; --start) {
      if (tokens[static_cast<size_t>(start + n - 1)] != suffix.back()) continue;
      if (!std::equal(suffix.begin(), suffix.end(), tokens.begin() + start)) continue;
      const int64_t from = start + n;
      const int64_t count = std::min<int64_t>(max_tokens, size - from);
      out.assign(tokens.begin() + from, tokens.begin() + from + count);
      return;
    }
  }
}

}  // namespace troupe
