// Workload JSON → workload, field by field. Unknown fields are errors too: a misspelt
// "duraton_s" must not silently run a different workload.
#include "workload.hpp"

#include <simdjson.h>

#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace troupe::load {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw workload_error(path + " " + what);
}

std::string show(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

object as_object(element e, const std::string& path) {
  object o;
  if (e.get_object().get(o)) fail(path, "must be an object");
  return o;
}

// Every key of o must be in allowed.
void check_keys(object o, const std::string& path, const std::set<std::string>& allowed) {
  for (auto field : o) {
    const std::string key(field.key);
    if (!allowed.count(key)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      throw workload_error("unknown field " + (path.empty() ? key : path + "." + key) +
                           " (allowed: " + list + ")");
    }
  }
}

std::optional<element> find(object o, const char* key) {
  element e;
  if (o.at_key(key).get(e)) return std::nullopt;
  return e;
}

std::string join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

double as_number(element e, const std::string& path) {
  double v = 0;
  if (e.get_double().get(v)) fail(path, "must be a number");
  return v;
}

int64_t as_integer(element e, const std::string& path) {
  int64_t v = 0;
  if (e.is_double()) {
    const double d = e.get_double().value_unsafe();
    if (d != std::floor(d)) fail(path, "must be an integer, got " + show(d));
    return static_cast<int64_t>(d);
  }
  if (e.get_int64().get(v)) fail(path, "must be an integer");
  return v;
}

std::string as_string(element e, const std::string& path) {
  std::string_view v;
  if (e.get_string().get(v)) fail(path, "must be a string");
  return std::string(v);
}

bool as_bool(element e, const std::string& path) {
  bool v = false;
  if (e.get_bool().get(v)) fail(path, "must be true or false");
  return v;
}

double positive(double v, const std::string& path) {
  if (!(v > 0) || !std::isfinite(v)) fail(path, "must be > 0, got " + show(v));
  return v;
}

double non_negative(double v, const std::string& path) {
  if (!(v >= 0) || !std::isfinite(v)) fail(path, "must be >= 0, got " + show(v));
  return v;
}

// A length: an integer, or {"min": a, "max": b}.
length_spec parse_length(element e, const std::string& path) {
  if (e.is<object>()) {
    const object o = as_object(e, path);
    check_keys(o, path, {"min", "max"});
    const auto lo = find(o, "min");
    const auto hi = find(o, "max");
    if (!lo) fail(join(path, "min"), "is required");
    if (!hi) fail(join(path, "max"), "is required");
    length_spec s{as_integer(*lo, join(path, "min")), as_integer(*hi, join(path, "max"))};
    if (s.min_tokens < 1) fail(join(path, "min"), "must be >= 1, got " + show(double(s.min_tokens)));
    if (s.max_tokens < s.min_tokens) {
      fail(join(path, "max"), "must be >= min (" + show(double(s.min_tokens)) + "), got " +
                                  show(double(s.max_tokens)));
    }
    return s;
  }
  const int64_t n = as_integer(e, path);
  if (n < 1) fail(path, "must be >= 1, got " + show(double(n)));
  return {n, n};
}

open_loop parse_arrival(element e) {
  const object o = as_object(e, "arrival");
  check_keys(o, "arrival", {"process", "rate"});
  open_loop a;
  if (const auto p = find(o, "process")) {
    const std::string s = as_string(*p, "arrival.process");
    if (s == "poisson") a.process = arrival_process::poisson;
    else if (s == "constant") a.process = arrival_process::constant;
    else fail("arrival.process", "must be \"poisson\" or \"constant\", got \"" + s + "\"");
  }
  const auto rate = find(o, "rate");
  if (!rate) fail("arrival.rate", "is required (requests per second)");
  a.rate_per_s = positive(as_number(*rate, "arrival.rate"), "arrival.rate");
  return a;
}

closed_loop parse_closed(element e) {
  const object o = as_object(e, "closed_loop");
  check_keys(o, "closed_loop", {"users", "think_time_ms", "think_time"});
  closed_loop c;
  const auto users = find(o, "users");
  if (!users) fail("closed_loop.users", "is required");
  c.num_users = as_integer(*users, "closed_loop.users");
  if (c.num_users < 1) fail("closed_loop.users", "must be >= 1, got " + show(double(c.num_users)));
  if (const auto t = find(o, "think_time_ms")) {
    c.think_time_ms = non_negative(as_number(*t, "closed_loop.think_time_ms"), "closed_loop.think_time_ms");
  }
  if (const auto k = find(o, "think_time")) {
    const std::string s = as_string(*k, "closed_loop.think_time");
    if (s == "constant") c.think_time = think_time_kind::constant;
    else if (s == "exponential") c.think_time = think_time_kind::exponential;
    else fail("closed_loop.think_time", "must be \"constant\" or \"exponential\", got \"" + s + "\"");
  }
  return c;
}

void parse_prompt(element e, workload& w, const std::string& base_dir) {
  const object o = as_object(e, "prompt");
  check_keys(o, "prompt", {"tokens", "file"});
  const auto tokens = find(o, "tokens");
  const auto file = find(o, "file");
  if (tokens.has_value() == file.has_value()) fail("prompt", "needs exactly one of tokens / file");
  if (tokens) w.prompt_tokens = parse_length(*tokens, "prompt.tokens");
  if (file) {
    const std::filesystem::path p = as_string(*file, "prompt.file");
    w.prompt_file = (p.is_absolute() ? p : std::filesystem::path(base_dir) / p).string();
  }
}

void parse_output(element e, workload& w) {
  const object o = as_object(e, "output");
  check_keys(o, "output", {"tokens", "from_file"});
  const auto tokens = find(o, "tokens");
  const auto from_file = find(o, "from_file");
  if (from_file) w.output_from_file = as_bool(*from_file, "output.from_file");
  if (tokens.has_value() == w.output_from_file) {
    fail("output", "needs exactly one of tokens / from_file: true");
  }
  if (tokens) w.output_tokens = parse_length(*tokens, "output.tokens");
}

std::vector<priority_class> parse_priorities(element e) {
  simdjson::dom::array items;
  if (e.get_array().get(items)) fail("priorities", "must be an array of {priority, weight}");
  std::vector<priority_class> out;
  for (element item : items) {
    const std::string path = "priorities[" + std::to_string(out.size()) + "]";
    const object o = as_object(item, path);
    check_keys(o, path, {"priority", "weight"});
    priority_class c;
    const auto p = find(o, "priority");
    if (!p) fail(join(path, "priority"), "is required");
    c.priority = as_integer(*p, join(path, "priority"));
    if (const auto wt = find(o, "weight")) c.weight = positive(as_number(*wt, join(path, "weight")), join(path, "weight"));
    out.push_back(c);
  }
  if (out.empty()) fail("priorities", "must not be empty (leave it out to send no priority)");
  return out;
}

cancel_spec parse_cancel(element e) {
  const object o = as_object(e, "cancel");
  check_keys(o, "cancel", {"share", "after_tokens"});
  cancel_spec c;
  const auto share = find(o, "share");
  if (!share) fail("cancel.share", "is required");
  c.share = as_number(*share, "cancel.share");
  if (!(c.share >= 0 && c.share <= 1)) fail("cancel.share", "must be in [0, 1], got " + show(c.share));
  if (const auto k = find(o, "after_tokens")) {
    c.after_tokens = as_integer(*k, "cancel.after_tokens");
    if (c.after_tokens < 1) fail("cancel.after_tokens", "must be >= 1, got " + show(double(c.after_tokens)));
  }
  return c;
}

slo_spec parse_slo(element e) {
  const object o = as_object(e, "slo");
  check_keys(o, "slo", {"ttft_ms", "tpot_ms", "e2e_ms"});
  slo_spec s;
  if (const auto v = find(o, "ttft_ms")) s.ttft_ms = positive(as_number(*v, "slo.ttft_ms"), "slo.ttft_ms");
  if (const auto v = find(o, "tpot_ms")) s.tpot_ms = positive(as_number(*v, "slo.tpot_ms"), "slo.tpot_ms");
  if (const auto v = find(o, "e2e_ms")) s.e2e_ms = positive(as_number(*v, "slo.e2e_ms"), "slo.e2e_ms");
  return s;
}

// Fields the driver itself writes into every request; a sampling block may not set them.
const std::set<std::string> driver_owned_fields = {
    "type", "id", "prompt", "messages", "max_tokens", "max_completion_tokens",
    "stream", "stream_options", "priority", "model"};

std::string parse_sampling(element e) {
  const object o = as_object(e, "sampling");
  for (auto field : o) {
    const std::string key(field.key);
    if (driver_owned_fields.count(key)) {
      fail("sampling." + key, "is set by the driver (use the workload's own fields)");
    }
  }
  return simdjson::minify(e);
}

}  // namespace

workload parse_workload(const std::string& json_text, const std::string& base_dir) {
  simdjson::dom::parser parser;
  element root;
  if (const auto err = parser.parse(json_text).get(root)) {
    throw workload_error(std::string("workload is not valid JSON: ") + simdjson::error_message(err));
  }
  const object o = as_object(root, "workload");
  check_keys(o, "", {"name", "seed", "api", "arrival", "closed_loop", "duration_s", "requests",
                     "prompt", "output", "priorities", "cancel", "slo", "sampling", "model",
                     "timeout_s", "connections"});
  workload w;
  if (const auto v = find(o, "name")) w.name = as_string(*v, "name");
  if (const auto v = find(o, "seed")) {
    const int64_t s = as_integer(*v, "seed");
    if (s < 0) fail("seed", "must be >= 0");
    w.seed = static_cast<uint64_t>(s);
  }
  if (const auto v = find(o, "api")) {
    const std::string s = as_string(*v, "api");
    if (s == "completions") w.api = api_kind::completions;
    else if (s == "chat") w.api = api_kind::chat;
    else fail("api", "must be \"completions\" or \"chat\", got \"" + s + "\"");
  }
  const auto arrival = find(o, "arrival");
  const auto closed = find(o, "closed_loop");
  if (arrival.has_value() == closed.has_value()) {
    throw workload_error("workload needs exactly one of arrival (open loop) / closed_loop");
  }
  if (arrival) w.arrival = parse_arrival(*arrival);
  if (closed) w.closed = parse_closed(*closed);
  if (const auto v = find(o, "duration_s")) w.duration_s = positive(as_number(*v, "duration_s"), "duration_s");
  if (const auto v = find(o, "requests")) {
    w.num_requests = as_integer(*v, "requests");
    if (*w.num_requests < 1) fail("requests", "must be >= 1, got " + show(double(*w.num_requests)));
  }
  if (!w.duration_s && !w.num_requests) {
    throw workload_error("workload needs duration_s or requests (or both: whichever ends first)");
  }
  const auto prompt = find(o, "prompt");
  if (!prompt) fail("prompt", "is required ({\"tokens\": N} or {\"file\": PATH})");
  parse_prompt(*prompt, w, base_dir);
  if (const auto v = find(o, "output")) parse_output(*v, w);
  if (w.output_from_file && !w.prompt_file) fail("output.from_file", "needs prompt.file");
  if (const auto v = find(o, "priorities")) w.priorities = parse_priorities(*v);
  if (const auto v = find(o, "cancel")) w.cancel = parse_cancel(*v);
  if (const auto v = find(o, "slo")) w.slo = parse_slo(*v);
  if (const auto v = find(o, "sampling")) w.sampling_json = parse_sampling(*v);
  if (const auto v = find(o, "model")) w.model = as_string(*v, "model");
  if (const auto v = find(o, "timeout_s")) w.timeout_s = positive(as_number(*v, "timeout_s"), "timeout_s");
  if (const auto v = find(o, "connections")) {
    w.num_connections = as_integer(*v, "connections");
    if (w.num_connections < 1 || w.num_connections > 1024) {
      fail("connections", "must be in [1, 1024], got " + show(double(w.num_connections)));
    }
  }
  return w;
}

workload load_workload_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw workload_error("cannot read workload file " + path);
  std::ostringstream text;
  text << in.rdbuf();
  const auto dir = std::filesystem::path(path).parent_path();
  try {
    return parse_workload(text.str(), dir.empty() ? "." : dir.string());
  } catch (const workload_error& e) {
    throw workload_error(path + ": " + e.what());
  }
}

void apply_sweep_point(workload& w, const std::string& param, double value) {
  if (param == "users") {
    if (!w.closed) throw workload_error("--sweep users needs a closed_loop workload");
    if (value < 1 || value != std::floor(value)) {
      throw workload_error("--sweep users values must be whole numbers >= 1, got " + show(value));
    }
    w.closed->num_users = static_cast<int64_t>(value);
  } else if (param == "rate") {
    if (!w.arrival) throw workload_error("--sweep rate needs an open-loop workload (arrival)");
    w.arrival->rate_per_s = positive(value, "--sweep rate value");
  } else {
    throw workload_error("--sweep parameter must be users or rate, got \"" + param + "\"");
  }
}

sweep_spec parse_sweep(const std::string& text) {
  const auto eq = text.find('=');
  if (eq == std::string::npos) throw workload_error("--sweep must look like users=1,4,16 or rate=1,2,4");
  sweep_spec s{text.substr(0, eq), {}};
  if (s.param != "users" && s.param != "rate") {
    throw workload_error("--sweep parameter must be users or rate, got \"" + s.param + "\"");
  }
  std::stringstream list(text.substr(eq + 1));
  std::string item;
  while (std::getline(list, item, ',')) {
    double v = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (ec != std::errc() || end != item.data() + item.size() || !(v > 0)) {
      throw workload_error("--sweep value \"" + item + "\" is not a positive number");
    }
    s.values.push_back(v);
  }
  if (s.values.empty()) throw workload_error("--sweep needs at least one value");
  return s;
}

}  // namespace troupe::load
