// Request records → run_report, and the report as a table or JSON (definitions in
// report.hpp).
#include "report.hpp"

#include <algorithm>
#include <cstdio>

#include "json_writer.hpp"

namespace troupe::load {

request_metrics measure(const request_record& r) {
  request_metrics m;
  m.e2e_ms = r.ended_ms - r.sent_ms;
  int64_t delta_tokens = 0;
  for (const auto& d : r.deltas) delta_tokens += d.num_tokens;
  m.output_tokens = r.completion_tokens.value_or(delta_tokens);
  if (r.deltas.empty()) return m;
  m.ttft_ms = r.deltas.front().at_ms - r.sent_ms;
  if (m.output_tokens > 1) {
    m.tpot_ms = (r.deltas.back().at_ms - r.deltas.front().at_ms) / static_cast<double>(m.output_tokens - 1);
  }
  for (size_t i = 1; i < r.deltas.size(); ++i) {
    const int64_t k = std::max<int64_t>(1, r.deltas[i].num_tokens);
    const double per_token = (r.deltas[i].at_ms - r.deltas[i - 1].at_ms) / static_cast<double>(k);
    for (int64_t t = 0; t < k; ++t) m.itl_ms.push_back(per_token);
  }
  return m;
}

bool meets_slo(const request_metrics& m, const slo_spec& slo) {
  if (slo.ttft_ms && !(m.ttft_ms && *m.ttft_ms <= *slo.ttft_ms)) return false;
  if (slo.tpot_ms && m.tpot_ms && *m.tpot_ms > *slo.tpot_ms) return false;
  if (slo.e2e_ms && m.e2e_ms > *slo.e2e_ms) return false;
  return true;
}

namespace {

class_report make_class_report(const std::vector<const request_record*>& records, const slo_spec& slo,
                               double elapsed_s) {
  class_report c;
  std::vector<double> ttft, tpot, itl, e2e;
  int64_t prompt_token_sum = 0;
  int64_t num_with_prompt_usage = 0;
  int64_t num_meeting = 0;
  for (const request_record* r : records) {
    ++c.num_sent;
    if (r->prompt_tokens) {
      prompt_token_sum += *r->prompt_tokens;
      ++num_with_prompt_usage;
    }
    if (r->result == outcome::cancelled) {
      ++c.num_cancelled;
      continue;
    }
    if (r->result == outcome::failed) {
      ++c.num_failed;
      const std::string reason = r->failure_reason.empty() ? "unknown" : r->failure_reason;
      ++c.failed_by_reason[reason];
      if (!r->failure_detail.empty()) c.first_failure_detail.emplace(reason, r->failure_detail);
      continue;
    }
    ++c.num_ok;
    const request_metrics m = measure(*r);
    c.total_output_tokens += m.output_tokens;
    if (m.ttft_ms) ttft.push_back(*m.ttft_ms);
    if (m.tpot_ms) tpot.push_back(*m.tpot_ms);
    itl.insert(itl.end(), m.itl_ms.begin(), m.itl_ms.end());
    e2e.push_back(m.e2e_ms);
    if (meets_slo(m, slo)) ++num_meeting;
  }
  if (elapsed_s > 0) {
    c.requests_per_s = static_cast<double>(c.num_ok) / elapsed_s;
    c.output_tokens_per_s = static_cast<double>(c.total_output_tokens) / elapsed_s;
  }
  if (num_with_prompt_usage > 0) {
    c.mean_prompt_tokens = static_cast<double>(prompt_token_sum) / static_cast<double>(num_with_prompt_usage);
  }
  if (c.num_ok > 0) c.mean_output_tokens = static_cast<double>(c.total_output_tokens) / static_cast<double>(c.num_ok);
  c.ttft_ms = summarize(std::move(ttft));
  c.tpot_ms = summarize(std::move(tpot));
  c.itl_ms = summarize(std::move(itl));
  c.e2e_ms = summarize(std::move(e2e));
  if (!slo.is_empty()) {
    c.num_meeting_slo = num_meeting;
    c.goodput_per_s = elapsed_s > 0 ? static_cast<double>(num_meeting) / elapsed_s : 0.0;
  }
  return c;
}

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string slo_text(const slo_spec& slo) {
  std::string s;
  const auto add = [&](const char* name, const std::optional<double>& v) {
    if (!v) return;
    if (!s.empty()) s += ", ";
    s += name;
    s += " <= " + fmt("%g", *v);
  };
  add("ttft_ms", slo.ttft_ms);
  add("tpot_ms", slo.tpot_ms);
  add("e2e_ms", slo.e2e_ms);
  return s;
}

std::string counts_line(const class_report& c) {
  std::string s = "sent " + std::to_string(c.num_sent) + "  ok " + std::to_string(c.num_ok) +
                  "  cancelled " + std::to_string(c.num_cancelled) + "  failed " + std::to_string(c.num_failed);
  if (!c.failed_by_reason.empty()) {
    s += " (";
    bool first = true;
    for (const auto& [reason, n] : c.failed_by_reason) {
      if (!first) s += ", ";
      s += reason + ": " + std::to_string(n);
      first = false;
    }
    s += ")";
  }
  return s;
}

std::string latency_row(const char* name, const summary& s) {
  char buf[160];
  if (s.count == 0) {
    std::snprintf(buf, sizeof buf, "  %-11s %9s\n", name, "-");
  } else {
    std::snprintf(buf, sizeof buf, "  %-11s %9.2f %9.2f %9.2f %9.2f %9.2f %8zu\n", name, s.mean, s.p50, s.p90,
                  s.p99, s.max, s.count);
  }
  return buf;
}

void write_summary(json_writer& j, const char* name, const summary& s) {
  j.key(name).begin_object();
  j.key("count").value(static_cast<uint64_t>(s.count));
  if (s.count > 0) {
    j.key("mean").value(s.mean).key("min").value(s.min).key("p50").value(s.p50);
    j.key("p90").value(s.p90).key("p99").value(s.p99).key("max").value(s.max);
  }
  j.end_object();
}

void write_class(json_writer& j, const class_report& c) {
  j.key("requests").begin_object();
  j.key("sent").value(c.num_sent).key("ok").value(c.num_ok);
  j.key("cancelled").value(c.num_cancelled).key("failed").value(c.num_failed);
  j.key("failed_by_reason").begin_object();
  for (const auto& [reason, n] : c.failed_by_reason) j.key(reason).value(n);
  j.end_object();
  j.key("first_failure_detail").begin_object();
  for (const auto& [reason, detail] : c.first_failure_detail) j.key(reason).value(detail);
  j.end_object().end_object();
  j.key("requests_per_s").value(c.requests_per_s);
  j.key("output_tokens_per_s").value(c.output_tokens_per_s);
  j.key("total_output_tokens").value(c.total_output_tokens);
  j.key("mean_output_tokens").value(c.mean_output_tokens);
  j.key("mean_prompt_tokens");
  if (c.mean_prompt_tokens) j.value(*c.mean_prompt_tokens); else j.null();
  write_summary(j, "ttft_ms", c.ttft_ms);
  write_summary(j, "tpot_ms", c.tpot_ms);
  write_summary(j, "itl_ms", c.itl_ms);
  write_summary(j, "e2e_ms", c.e2e_ms);
  if (c.goodput_per_s) {
    j.key("goodput").begin_object();
    j.key("requests_per_s").value(*c.goodput_per_s);
    j.key("requests_meeting_slo").value(*c.num_meeting_slo);
    j.end_object();
  }
}

}  // namespace

run_report make_report(const std::vector<request_record>& records, const slo_spec& slo, double elapsed_s) {
  run_report report;
  report.elapsed_s = elapsed_s;
  std::vector<const request_record*> all;
  std::map<int64_t, std::vector<const request_record*>> classes;
  std::vector<double> front_door;
  for (const auto& r : records) {
    all.push_back(&r);
    if (r.priority) classes[*r.priority].push_back(&r);
    front_door.insert(front_door.end(), r.front_door_ms.begin(), r.front_door_ms.end());
  }
  report.all = make_class_report(all, slo, elapsed_s);
  for (const auto& [priority, members] : classes) {
    report.by_priority[priority] = make_class_report(members, slo, elapsed_s);
  }
  report.front_door_ms = summarize(std::move(front_door));
  return report;
}

std::string format_table(const run_report& report, const slo_spec& slo) {
  const class_report& c = report.all;
  std::string out;
  out += "requests    " + counts_line(c) + "\n";
  out += "throughput  " + fmt("%.2f", c.requests_per_s) + " requests/s, " + fmt("%.1f", c.output_tokens_per_s) +
         " output tokens/s over " + fmt("%.2f", report.elapsed_s) + " s\n";
  out += "tokens      output mean " + fmt("%.1f", c.mean_output_tokens) + ", prompt mean (server-measured) " +
         (c.mean_prompt_tokens ? fmt("%.1f", *c.mean_prompt_tokens) : std::string("n/a")) + "\n";
  if (c.goodput_per_s) {
    out += "goodput     " + fmt("%.2f", *c.goodput_per_s) + " requests/s (" + std::to_string(*c.num_meeting_slo) +
           " of " + std::to_string(c.num_ok) + " ok meet " + slo_text(slo) + ")\n";
  }
  for (const auto& [reason, detail] : c.first_failure_detail) out += "  " + reason + ": " + detail + "\n";
  char header[160];
  std::snprintf(header, sizeof header, "latency ms  %9s %9s %9s %9s %9s %8s\n", "mean", "p50", "p90", "p99", "max",
                "samples");
  out += header;
  out += latency_row("ttft", c.ttft_ms);
  out += latency_row("tpot", c.tpot_ms);
  out += latency_row("itl", c.itl_ms);
  out += latency_row("e2e", c.e2e_ms);
  if (report.front_door_ms.count > 0) out += latency_row("front door", report.front_door_ms);
  for (const auto& [priority, p] : report.by_priority) {
    out += "priority " + std::to_string(priority) + ":  " + counts_line(p) + "; " + fmt("%.2f", p.requests_per_s) +
           " req/s; ttft p50/p99 " + fmt("%.1f", p.ttft_ms.p50) + "/" + fmt("%.1f", p.ttft_ms.p99) +
           " ms; e2e p50/p99 " + fmt("%.1f", p.e2e_ms.p50) + "/" + fmt("%.1f", p.e2e_ms.p99) + " ms";
    if (p.goodput_per_s) out += "; goodput " + fmt("%.2f", *p.goodput_per_s) + " req/s";
    out += "\n";
  }
  return out;
}

std::string report_json(const run_report& report, const slo_spec& slo) {
  json_writer j;
  j.begin_object();
  j.key("elapsed_s").value(report.elapsed_s);
  write_class(j, report.all);
  write_summary(j, "front_door_ms", report.front_door_ms);
  j.key("slo").begin_object();
  if (slo.ttft_ms) j.key("ttft_ms").value(*slo.ttft_ms);
  if (slo.tpot_ms) j.key("tpot_ms").value(*slo.tpot_ms);
  if (slo.e2e_ms) j.key("e2e_ms").value(*slo.e2e_ms);
  j.end_object();
  j.key("by_priority").begin_object();
  for (const auto& [priority, p] : report.by_priority) {
    j.key(std::to_string(priority)).begin_object();
    write_class(j, p);
    j.end_object();
  }
  j.end_object();
  j.end_object();
  return j.str();
}

}  // namespace troupe::load
