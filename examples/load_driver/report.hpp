// From request records to a run's report: counts by outcome and failure reason,
// throughput, TTFT / TPOT / ITL / E2E percentiles, goodput under the workload's SLO, the
// same per priority class, and the front-door latency; printed as a table or as JSON.
//
// Definitions (per request, from its record):
//   TTFT  = first non-empty text delta − send
//   TPOT  = (last delta − first delta) / (output tokens − 1), when output tokens > 1
//   ITL   = each gap between consecutive deltas; a delta carrying k tokens adds k samples
//           of gap / k
//   E2E   = end − send
//   output tokens = usage.completion_tokens when reported, else the tokens the deltas carried
// Latencies, token counts and goodput cover ok requests; cancelled and failed ones are
// counted on their own. Front-door latency covers every delta that carried server_ms.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "record.hpp"
#include "stats.hpp"
#include "workload.hpp"

namespace troupe::load {

struct request_metrics {
  std::optional<double> ttft_ms;
  std::optional<double> tpot_ms;
  std::vector<double> itl_ms;
  double e2e_ms = 0;
  int64_t output_tokens = 0;
};

request_metrics measure(const request_record& r);

// Whether an ok request meets every limit slo sets (an unset TPOT meets a TPOT limit).
bool meets_slo(const request_metrics& m, const slo_spec& slo);

struct class_report {
  int64_t num_sent = 0;
  int64_t num_ok = 0;
  int64_t num_cancelled = 0;
  int64_t num_failed = 0;
  std::map<std::string, int64_t> failed_by_reason;
  std::map<std::string, std::string> first_failure_detail;  // by reason: what the server said
  double requests_per_s = 0;        // ok requests / elapsed
  double output_tokens_per_s = 0;   // ok requests' output tokens / elapsed
  int64_t total_output_tokens = 0;
  std::optional<double> mean_prompt_tokens;   // from usage.prompt_tokens
  double mean_output_tokens = 0;
  summary ttft_ms, tpot_ms, itl_ms, e2e_ms;
  std::optional<int64_t> num_meeting_slo;    // set when the workload has an slo
  std::optional<double> goodput_per_s;
};

struct run_report {
  double elapsed_s = 0;             // first send to last end
  class_report all;
  std::map<int64_t, class_report> by_priority;  // empty when requests carry no priority
  summary front_door_ms;
};

run_report make_report(const std::vector<request_record>& records, const slo_spec& slo, double elapsed_s);

// A human-readable table (several lines, ending in a newline).
std::string format_table(const run_report& report, const slo_spec& slo);
// The report as one JSON object.
std::string report_json(const run_report& report, const slo_spec& slo);

}  // namespace troupe::load
