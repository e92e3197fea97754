// What the driver saw of one request: when it was sent, when each piece of text arrived,
// how it ended. Clients fill it in; report.cpp turns it into latencies. Times are
// milliseconds on the driver's steady clock (run_clock_ms).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace troupe::load {

// ok: the server finished it (finish_reason stop or length). cancelled: the workload
// cancelled it after K tokens. failed: anything else (the reason says what).
enum class outcome { ok, cancelled, failed };

struct delta_arrival {
  double at_ms = 0;
  int64_t num_tokens = 1;  // tokens the delta carried (WebSocket "tokens"; 1 per SSE chunk)
};

struct request_record {
  uint64_t index = 0;
  std::optional<int64_t> priority;
  double sent_ms = 0;
  double ended_ms = 0;
  std::vector<delta_arrival> deltas;  // deltas with non-empty text, in arrival order
  outcome result = outcome::failed;
  std::string failure_reason;         // http_<status>, error_<code>, finish_<reason>,
                                      // connection, timeout, protocol
  std::string failure_detail;         // the server's message, for the log
  std::optional<int64_t> prompt_tokens;      // usage, when the server reported it
  std::optional<int64_t> completion_tokens;
  std::vector<double> front_door_ms;  // client receipt − delta.server_ms, when sent
};

// Milliseconds since the driver started, on a steady clock.
double run_clock_ms();
// Milliseconds since the Unix epoch (to compare with a server's server_ms).
double epoch_ms();

}  // namespace troupe::load
