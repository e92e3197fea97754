// Turns a workload into concrete requests and timings. Request i, its arrival gap and the
// think time after it each come from their own seeded stream, so a seed names the same
// requests however fast the server answers.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "prompts.hpp"
#include "workload.hpp"

namespace troupe::load {

struct request_spec {
  uint64_t index = 0;
  std::string id;                            // "r<index>"
  std::string prompt;
  int64_t max_tokens = 0;
  std::optional<int64_t> priority;           // sent only when the workload has priorities
  std::optional<int64_t> cancel_after_tokens;
};

class request_plan {
 public:
  // file_prompts: the prompt file's entries when the workload names one, else empty.
  request_plan(workload w, std::vector<prompt_entry> file_prompts);

  request_spec make_request(uint64_t index) const;
  // Open loop: the gap in ms between request index-1's arrival and request index's.
  double arrival_gap_ms(uint64_t index) const;
  // Closed loop: how long a user waits after request index finished before the next.
  double think_time_ms(uint64_t index) const;

  const workload& spec() const { return workload_; }

 private:
  workload workload_;
  std::vector<prompt_entry> file_prompts_;
};

// Builds the plan for w, reading its prompt file if it names one.
request_plan make_plan(const workload& w);

}  // namespace troupe::load
