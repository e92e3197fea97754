// The workload a run replays: how requests arrive (open or closed loop), what they ask
// for, when the run stops, and the latency limits goodput is judged by. Parsed from JSON;
// every error names the field path at fault ("arrival.rate must be > 0, got 0").
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace troupe::load {

struct workload_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class api_kind { completions, chat };
enum class arrival_process { poisson, constant };
enum class think_time_kind { constant, exponential };

// A length in tokens: fixed (min == max) or uniform over [min, max].
struct length_spec {
  int64_t min_tokens = 0;
  int64_t max_tokens = 0;
};

struct open_loop {
  arrival_process process = arrival_process::poisson;
  double rate_per_s = 1.0;
};

struct closed_loop {
  int64_t num_users = 1;
  double think_time_ms = 0.0;
  think_time_kind think_time = think_time_kind::constant;
};

struct priority_class {
  int64_t priority = 0;
  double weight = 1.0;
};

struct cancel_spec {
  double share = 0.0;          // of requests, cancelled by the client ...
  int64_t after_tokens = 1;    // ... once this many output tokens have arrived
};

// Per-request limits; a request counts toward goodput when it meets every one that is set.
struct slo_spec {
  std::optional<double> ttft_ms;
  std::optional<double> tpot_ms;
  std::optional<double> e2e_ms;
  bool is_empty() const { return !ttft_ms && !tpot_ms && !e2e_ms; }
};

struct workload {
  std::string name = "workload";
  uint64_t seed = 0;
  api_kind api = api_kind::completions;
  std::optional<open_loop> arrival;       // exactly one of arrival / closed
  std::optional<closed_loop> closed;
  std::optional<double> duration_s;       // at least one of duration_s / num_requests
  std::optional<int64_t> num_requests;
  // Prompts: synthetic of prompt_tokens length, or lines of prompt_file.
  std::optional<length_spec> prompt_tokens;
  std::optional<std::string> prompt_file;  // resolved against the workload file's folder
  length_spec output_tokens{64, 64};
  bool output_from_file = false;           // each prompt file entry says its output_tokens
  std::vector<priority_class> priorities;  // empty: no priority field is sent
  cancel_spec cancel;
  slo_spec slo;
  std::string sampling_json = "{}";        // copied into every request body as given
  std::optional<std::string> model;
  double timeout_s = 120.0;                // per request, from send to done
  int64_t num_connections = 1;             // WebSocket connections the requests share

  bool is_open_loop() const { return arrival.has_value(); }
};

// Parses a workload from JSON text. base_dir resolves a relative prompt file path.
workload parse_workload(const std::string& json_text, const std::string& base_dir = ".");
workload load_workload_file(const std::string& path);

// Applies one --sweep point: "users" sets closed.num_users, "rate" sets arrival.rate_per_s.
// Throws workload_error when the parameter does not fit the workload's loop.
void apply_sweep_point(workload& w, const std::string& param, double value);

// Parses --sweep "users=1,4,16": the parameter name and its values, in order.
struct sweep_spec {
  std::string param;
  std::vector<double> values;
};
sweep_spec parse_sweep(const std::string& text);

}  // namespace troupe::load
