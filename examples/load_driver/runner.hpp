// Drives one run of a workload through a client: open loop (requests arrive on a
// schedule, however many are in flight) or closed loop (N users, each sends, waits for the
// end, thinks, sends again); stops at the duration or the request count, whichever comes
// first, then lets the requests in flight finish. Prints a live progress line.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <string>
#include <vector>

#include "client.hpp"
#include "plan.hpp"
#include "record.hpp"

namespace troupe::load {

struct run_options {
  bool show_progress = true;
  std::string label;  // shown before the progress line (the sweep point)
};

struct run_result {
  std::vector<request_record> records;  // in order of completion
  double elapsed_s = 0;                 // first send to last end
};

boost::asio::awaitable<run_result> run_workload(stream_client& client, const request_plan& plan,
                                                const run_options& options);

}  // namespace troupe::load
