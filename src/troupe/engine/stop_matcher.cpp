// stop_matcher: per-stop-string KMP automata over the output bytes and the held-back tail.
#include "troupe/engine/stop_matcher.hpp"

#include <algorithm>
#include <utility>

#include "troupe/model/error.hpp"

namespace troupe {
namespace {

// failure[i]: length of the longest proper prefix of s[0..i] that is also its suffix.
std::vector<int32_t> prefix_function(const std::string& s) {
  std::vector<int32_t> failure(s.size(), 0);
  for (size_t i = 1; i < s.size(); ++i) {
    int32_t k = failure[i - 1];
    while (k > 0 && s[i] != s[static_cast<size_t>(k)]) k = failure[static_cast<size_t>(k) - 1];
    if (s[i] == s[static_cast<size_t>(k)]) ++k;
    failure[i] = k;
  }
  return failure;
}

}  // namespace

stop_matcher::stop_matcher(std::vector<std::string> stop_strings)
    : stop_strings_(std::move(stop_strings)), num_matched_(stop_strings_.size(), 0) {
  failure_.reserve(stop_strings_.size());
  for (size_t i = 0; i < stop_strings_.size(); ++i) {
    if (stop_strings_[i].empty()) {
      throw error(error_code::invalid_argument,
                  "stop[" + std::to_string(i) + "] is empty; stop strings must have at least one byte");
    }
    failure_.push_back(prefix_function(stop_strings_[i]));
  }
}

std::optional<size_t> stop_matcher::advance(char byte) {
  std::optional<size_t> completed;
  for (size_t s = 0; s < stop_strings_.size(); ++s) {
    const std::string& stop = stop_strings_[s];
    const std::vector<int32_t>& failure = failure_[s];
    int32_t k = num_matched_[s];
    while (k > 0 && stop[static_cast<size_t>(k)] != byte) k = failure[static_cast<size_t>(k) - 1];
    if (stop[static_cast<size_t>(k)] == byte) ++k;
    if (static_cast<size_t>(k) == stop.size()) {
      if (!completed || stop.size() > stop_strings_[*completed].size()) completed = s;
      k = failure[static_cast<size_t>(k) - 1];
    }
    num_matched_[s] = k;
  }
  return completed;
}

stop_matcher::result stop_matcher::push(std::string_view chunk, bool can_stop) {
  result out;
  if (stopped_) return out;
  std::string text = std::move(held_);
  held_.clear();
  const size_t num_old_bytes = text.size();
  text.append(chunk);
  for (size_t i = 0; i < chunk.size(); ++i) {
    const std::optional<size_t> stop = advance(chunk[i]);
    if (!stop || !can_stop) continue;
    const size_t match_end = num_old_bytes + i + 1;
    text.resize(match_end - stop_strings_[*stop].size());
    out.text = std::move(text);
    out.stop_index = stop;
    stopped_ = true;
    return out;
  }
  // Every automaton's state is a suffix of the text that is a prefix of its stop string;
  // the longest of them is what could still turn into a stop string.
  size_t num_keep = 0;
  for (int32_t n : num_matched_) num_keep = std::max(num_keep, static_cast<size_t>(n));
  held_.assign(text, text.size() - num_keep, num_keep);
  text.resize(text.size() - num_keep);
  out.text = std::move(text);
  return out;
}

std::string stop_matcher::flush() {
  std::string out = std::move(held_);
  held_.clear();
  std::fill(num_matched_.begin(), num_matched_.end(), 0);
  return out;
}

}  // namespace troupe
