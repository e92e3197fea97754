// Finds stop strings in streamed text: releases what can no longer be part of a stop string
// and holds back the tail that still could be; the stop string itself is never released.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

// One KMP automaton per stop string, fed byte by byte, so each byte of output is looked at
// once per stop string however the text is chunked; only the held-back tail (shorter than
// the longest stop string) is kept. When several stop strings could match, the one that
// completes first in the text wins (the longest among those completing at the same byte),
// so the outcome does not depend on how the text was split into chunks.
class stop_matcher {
 public:
  struct result {
    std::string text;                 // safe to emit now
    std::optional<size_t> stop_index; // the stop string that completed; text is what preceded it
  };

  // Throws troupe::error(invalid_argument) for an empty stop string.
  explicit stop_matcher(std::vector<std::string> stop_strings);

  // Feeds the next chunk of output. After a stop string has completed, returns nothing more.
  // With can_stop false (the output is still short of min_tokens) a stop string that
  // completes in this chunk is released as text and matching goes on; one that starts here
  // and completes in a later chunk pushed with can_stop still stops there.
  result push(std::string_view chunk, bool can_stop = true);
  // The held-back text, for when the output ends without a stop string; empty after a stop.
  std::string flush();

  bool is_stopped() const { return stopped_; }
  size_t num_held_bytes() const { return held_.size(); }
  const std::vector<std::string>& stop_strings() const { return stop_strings_; }

 private:
  // Feeds one byte to every automaton; returns the index of a stop string it completes.
  std::optional<size_t> advance(char byte);

  std::vector<std::string> stop_strings_;
  std::vector<std::vector<int32_t>> failure_;  // KMP prefix function of each stop string
  std::vector<int32_t> num_matched_;           // length of the stop prefix ending the text
  std::string held_;
  bool stopped_ = false;
};

}  // namespace troupe
