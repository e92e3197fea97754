#include "failure_watch.hpp"

namespace troupe::load {

bool failure_watch::is_busy_refusal(const std::string& reason) {
  return reason == "http_429" || reason == "http_503" || reason == "error_queue_full" ||
         reason == "error_unavailable";
}

std::string failure_watch::on_result(const request_record& r) {
  if (r.result != outcome::failed) {
    num_in_a_row_ = 0;
    return {};
  }
  if (is_busy_refusal(r.failure_reason)) return {};
  ++num_in_a_row_;
  last_reason_ = r.failure_reason;
  if (has_failed_) return {};
  has_failed_ = true;
  std::string line = "first failure: " + r.failure_reason;
  if (!r.failure_detail.empty()) line += ": " + r.failure_detail;
  return line;
}

}  // namespace troupe::load
