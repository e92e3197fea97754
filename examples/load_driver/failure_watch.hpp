// Watches a run's outcomes for a server that is wrong rather than busy: the first failure of
// the run is shown at once (reason and the server's message, e.g. a 404 for a URL without
// /v1), and a run of failures of any kind in a row stops the run, instead of sending
// thousands of failing requests a second. Refusals that mean "busy" (429 / queue_full,
// 503 / unavailable) are what an overload test expects: they neither count nor reset.
#pragma once
#include <cstdint>
#include <string>

#include "record.hpp"

namespace troupe::load {

class failure_watch {
 public:
  explicit failure_watch(int64_t max_failures_in_a_row = 32) : max_in_a_row_(max_failures_in_a_row) {}

  // Notes one finished request. Returns a line to print for the run's first failure
  // ("first failure: http_404: not found"), else empty.
  std::string on_result(const request_record& r);

  bool should_stop() const { return num_in_a_row_ >= max_in_a_row_; }
  int64_t num_in_a_row() const { return num_in_a_row_; }
  const std::string& last_reason() const { return last_reason_; }

  // Whether a failure reason is the server saying it is busy (not wrong).
  static bool is_busy_refusal(const std::string& reason);

 private:
  int64_t max_in_a_row_;
  int64_t num_in_a_row_ = 0;
  bool has_failed_ = false;
  std::string last_reason_;
};

}  // namespace troupe::load
