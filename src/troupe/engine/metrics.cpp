// The registry's bookkeeping (families, label checks) and the Prometheus text exposition.
#include "troupe/engine/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "troupe/model/error.hpp"

namespace troupe {

namespace {

bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }

// Metric names may also hold ':'; label names may not, and "__" starts reserved ones.
void check_metric_name(const std::string& name) {
  const bool ok = !name.empty() && (is_name_start(name[0]) || name[0] == ':') &&
                  std::all_of(name.begin(), name.end(), [](char c) { return is_name_char(c) || c == ':'; });
  if (!ok) throw error(error_code::invalid_argument, "metric name '" + name + "' must match [a-zA-Z_:][a-zA-Z0-9_:]*");
}

void check_label_name(const std::string& name) {
  const bool ok = !name.empty() && is_name_start(name[0]) && std::all_of(name.begin(), name.end(), is_name_char) &&
                  name.rfind("__", 0) != 0 && name != "le";
  if (!ok) {
    throw error(error_code::invalid_argument,
                "label name '" + name + "' must match [a-zA-Z_][a-zA-Z0-9_]*, not start with __ and not be le");
  }
}

// {a="x",b="y"}, with `extra` (a histogram's le) last; empty when there are no labels.
std::string label_text(const std::vector<std::string>& names, const std::vector<std::string>& values,
                       const std::string& extra = {}) {
  if (names.empty() && extra.empty()) return {};
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) out += ',';
    out += names[i];
    out += "=\"";
    out += escape_label_value(values[i]);
    out += '"';
  }
  if (!extra.empty()) {
    if (!names.empty()) out += ',';
    out += extra;
  }
  out += '}';
  return out;
}

void append_sample(std::string& out, const std::string& name, const std::string& labels, double value) {
  out += name;
  out += labels;
  out += ' ';
  out += format_metric_value(value);
  out += '\n';
}

}  // namespace

const char* to_string(metric_type type) {
  switch (type) {
    case metric_type::counter: return "counter";
    case metric_type::gauge: return "gauge";
    case metric_type::histogram: return "histogram";
  }
  return "untyped";
}

histogram_metric::histogram_metric(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (!std::isfinite(bounds_[i]) || (i > 0 && bounds_[i] <= bounds_[i - 1])) {
      throw error(error_code::invalid_argument, "histogram bounds must be finite and strictly increasing");
    }
  }
  counts_ = std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1);
}

void histogram_metric::observe(double value) {
  if (std::isnan(value)) return;
  const auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  counts_[static_cast<size_t>(bucket)].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

histogram_metric::snapshot histogram_metric::read() const {
  snapshot s;
  s.cumulative_counts.resize(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    s.cumulative_counts[i] = total;
  }
  s.count = total;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> exponential_buckets(double start, double factor, int count) {
  if (!(start > 0) || !(factor > 1) || count < 1) {
    throw error(error_code::invalid_argument, "exponential_buckets needs start > 0, factor > 1 and count >= 1");
  }
  std::vector<double> out;
  for (double b = start; static_cast<int>(out.size()) < count; b *= factor) out.push_back(b);
  return out;
}

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string escape_help(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string format_metric_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[32];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, end);
}

std::pair<metrics_registry::family*, std::vector<std::string>> metrics_registry::family_for(
    const std::string& name, const std::string& help, metric_type type, const metric_labels& labels,
    const std::vector<double>& bounds) {
  std::vector<std::string> names;
  std::vector<std::string> values;
  for (const auto& [label, value] : labels) {
    check_label_name(label);
    if (std::find(names.begin(), names.end(), label) != names.end()) {
      throw error(error_code::invalid_argument, "metric '" + name + "' names label '" + label + "' twice");
    }
    names.push_back(label);
    values.push_back(value);
  }
  auto it = families_.find(name);
  if (it == families_.end()) {
    check_metric_name(name);
    family f;
    f.type = type;
    f.help = help;
    f.label_names = names;
    f.bounds = bounds;
    it = families_.emplace(name, std::move(f)).first;
  }
  family& f = it->second;
  if (f.type != type) {
    throw error(error_code::invalid_argument, "metric '" + name + "' is already registered as a " +
                                                  to_string(f.type));
  }
  if (f.label_names != names) {
    throw error(error_code::invalid_argument, "metric '" + name + "' has other label names (in another order)");
  }
  if (f.bounds != bounds) {
    throw error(error_code::invalid_argument, "histogram '" + name + "' is already registered with other bounds");
  }
  return {&f, std::move(values)};
}

counter_metric* metrics_registry::counter(const std::string& name, const std::string& help,
                                          const metric_labels& labels) {
  std::lock_guard lock(mutex_);
  auto [f, values] = family_for(name, help, metric_type::counter, labels, {});
  auto& slot = f->counters[values];
  if (!slot) slot = std::make_unique<counter_metric>();
  return slot.get();
}

gauge_metric* metrics_registry::gauge(const std::string& name, const std::string& help, const metric_labels& labels) {
  std::lock_guard lock(mutex_);
  auto [f, values] = family_for(name, help, metric_type::gauge, labels, {});
  auto& slot = f->gauges[values];
  if (!slot) slot = std::make_unique<gauge_metric>();
  return slot.get();
}

histogram_metric* metrics_registry::histogram(const std::string& name, const std::string& help,
                                              const std::vector<double>& bounds, const metric_labels& labels) {
  auto fresh = std::make_unique<histogram_metric>(bounds);  // checks the bounds before the family keeps them
  std::lock_guard lock(mutex_);
  auto [f, values] = family_for(name, help, metric_type::histogram, labels, bounds);
  auto& slot = f->histograms[values];
  if (!slot) slot = std::move(fresh);
  return slot.get();
}

std::string metrics_registry::render_prometheus() const {
  std::lock_guard lock(mutex_);
  std::string out;
  out.reserve(families_.size() * 256);
  for (const auto& [name, f] : families_) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += escape_help(f.help);
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += to_string(f.type);
    out += '\n';
    for (const auto& [values, c] : f.counters) append_sample(out, name, label_text(f.label_names, values), c->value());
    for (const auto& [values, g] : f.gauges) append_sample(out, name, label_text(f.label_names, values), g->value());
    for (const auto& [values, h] : f.histograms) {
      const auto s = h->read();
      for (size_t i = 0; i <= f.bounds.size(); ++i) {
        std::string le = "le=\"";
        le += i < f.bounds.size() ? format_metric_value(f.bounds[i]) : std::string("+Inf");
        le += '"';
        append_sample(out, name + "_bucket", label_text(f.label_names, values, le),
                      static_cast<double>(s.cumulative_counts[i]));
      }
      append_sample(out, name + "_sum", label_text(f.label_names, values), s.sum);
      append_sample(out, name + "_count", label_text(f.label_names, values), static_cast<double>(s.count));
    }
  }
  return out;
}

std::vector<metric_sample> metrics_registry::samples() const {
  std::lock_guard lock(mutex_);
  std::vector<metric_sample> out;
  auto labels_of = [](const family& f, const std::vector<std::string>& values) {
    metric_labels labels;
    for (size_t i = 0; i < f.label_names.size(); ++i) labels.emplace_back(f.label_names[i], values[i]);
    return labels;
  };
  for (const auto& [name, f] : families_) {
    for (const auto& [values, c] : f.counters) out.push_back({name, labels_of(f, values), c->value()});
    for (const auto& [values, g] : f.gauges) out.push_back({name, labels_of(f, values), g->value()});
    for (const auto& [values, h] : f.histograms) {
      const auto s = h->read();
      const auto labels = labels_of(f, values);
      for (size_t i = 0; i <= f.bounds.size(); ++i) {
        auto with_le = labels;
        with_le.emplace_back("le", i < f.bounds.size() ? format_metric_value(f.bounds[i]) : std::string("+Inf"));
        out.push_back({name + "_bucket", std::move(with_le), static_cast<double>(s.cumulative_counts[i])});
      }
      out.push_back({name + "_sum", labels, s.sum});
      out.push_back({name + "_count", labels, static_cast<double>(s.count)});
    }
  }
  return out;
}

}  // namespace troupe
