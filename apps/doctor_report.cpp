// format_diagnosis_report: the limiting factor and its knob first, then every finding with
// its evidence (value, comparison, threshold), then one line of figures per replica.
#include <cmath>
#include <cstdio>
#include <string>

#include "apps/doctor.hpp"

namespace troupe::apps {

namespace {

std::string number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, std::fabs(v) >= 1000 ? "%.0f" : "%.3g", v);
  return text;
}

// -1: the window could not give it.
std::string figure(double v, double scale = 1, const char* unit = "") {
  return v < 0 ? std::string("-") : number(v * scale) + unit;
}

}  // namespace

std::string format_diagnosis_report(const diagnosis& d) {
  std::string out = "troupe doctor: " + std::to_string(d.replicas.size()) + " replica(s), " +
                    std::to_string(d.num_snapshots) + " snapshots\n";
  const finding& top = d.findings.front();
  out += "limiting factor: " + std::string(to_string(d.limiting_factor));
  if (!top.replica.empty()) out += " (replica " + top.replica + ")";
  out += "\n  knob: " + std::string(to_string(top.knob_to_turn)) + "\n  " + top.advice + "\n\nfindings:\n";
  int i = 0;
  for (const auto& f : d.findings) {
    out += "  " + std::to_string(++i) + ". " + to_string(f.kind);
    if (!f.replica.empty()) out += " on " + f.replica;
    out += "  confidence " + number(f.confidence) + "  knob " + to_string(f.knob_to_turn) + "\n     " + f.advice +
           "\n     evidence:";
    for (const auto& e : f.evidence) {
      out += " " + e.name + "=" + number(e.value) + " (" + e.op + " " + number(e.threshold) + ")";
    }
    out += "\n";
  }
  out += "\nreplicas (over " + number(d.replicas.empty() ? 0 : d.replicas.front().duration_seconds) + " s):\n";
  for (const auto& r : d.replicas) {
    out += "  " + r.replica + ": running " + number(r.mean_running) + " (max " + number(r.max_running) + "/" +
           figure(r.max_num_seqs) + "), waiting " + number(r.mean_waiting) + ", busy " + figure(r.busy_ratio, 100, "%") +
           ", step " + figure(r.mean_step_seconds, 1000, " ms") + ", batch fill " + figure(r.batch_fill, 100, "%") +
           ", prefill " + figure(r.prefill_share, 100, "%") + ", KV " + figure(r.max_kv_usage, 100, "%") +
           " peak, preemptions " + number(r.num_preemptions) + ", queue share " + figure(r.queue_share, 100, "%") +
           ", " + number(r.requests_per_second) + " req/s, " + number(r.generation_tokens_per_second) + " tok/s\n";
  }
  return out;
}

}  // namespace troupe::apps
