// troupe-load: replays a workload file against troupe's WebSocket or any OpenAI-compatible
// HTTP server and reports latency, throughput and goodput; with --sweep, once per load
// level. Exit status: 0 done, 1 bad command line or workload, 2 server unreachable,
// 3 a run in which no request succeeded.
#include <sys/resource.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <string>

#include "client.hpp"
#include "json_writer.hpp"
#include "plan.hpp"
#include "report.hpp"
#include "runner.hpp"
#include "workload.hpp"

namespace {

using namespace troupe::load;
namespace asio = boost::asio;

constexpr const char* usage_text =
    "usage: troupe-load --url URL --workload FILE.json [--out RESULT.json] [--api-key KEY]\n"
    "                   [--sweep users=1,4,16 | rate=1,2,4] [--model NAME] [--quiet]\n"
    "  URL: ws://HOST:PORT/v1/ws (troupe's WebSocket) or http://HOST:PORT/v1 (OpenAI-compatible)\n"
    "  --quiet: no live progress line (the report is still printed)\n";

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct options {
  std::string url;
  std::string workload_path;
  std::optional<std::string> out_path;
  std::string api_key;
  std::optional<std::string> sweep;
  std::optional<std::string> model;
  bool is_quiet = false;
};

options parse_args(int argc, char** argv) {
  options o;
  const std::map<std::string, std::string*> string_flags = {
      {"--url", &o.url}, {"--workload", &o.workload_path}, {"--api-key", &o.api_key}};
  const std::map<std::string, std::optional<std::string>*> optional_flags = {
      {"--out", &o.out_path}, {"--sweep", &o.sweep}, {"--model", &o.model}};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(usage_text, stdout);
      std::exit(0);
    }
    if (arg == "--quiet") {
      o.is_quiet = true;
      continue;
    }
    std::optional<std::string> value;
    if (const auto eq = arg.find('='); eq != std::string::npos && arg.rfind("--", 0) == 0) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    const bool is_string = string_flags.count(arg) > 0;
    if (!is_string && !optional_flags.count(arg)) throw usage_error("unknown option " + arg);
    if (!value) {
      if (i + 1 >= argc) throw usage_error(arg + " needs a value");
      value = argv[++i];
    }
    if (is_string) *string_flags.at(arg) = *value;
    else *optional_flags.at(arg) = *value;
  }
  if (o.url.empty()) throw usage_error("--url is required");
  if (o.workload_path.empty()) throw usage_error("--workload is required");
  return o;
}

struct sweep_point {
  std::string param;
  double value = 0;
  workload w;
};

std::vector<sweep_point> sweep_points(const workload& base, const std::optional<std::string>& sweep) {
  std::vector<sweep_point> points;
  if (!sweep) {
    if (base.closed) points.push_back({"users", static_cast<double>(base.closed->num_users), base});
    else points.push_back({"rate", base.arrival->rate_per_s, base});
    return points;
  }
  const sweep_spec spec = parse_sweep(*sweep);
  for (const double v : spec.values) {
    workload w = base;
    apply_sweep_point(w, spec.param, v);
    points.push_back({spec.param, v, std::move(w)});
  }
  return points;
}

std::string show_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// Every HTTP stream holds a socket: lift the soft limit on open files (often 1024) to the
// hard one, so that a sweep to a thousand streams fails for the server's reasons, not ours.
void raise_open_file_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

struct point_result {
  const sweep_point* point = nullptr;
  run_report report;
};

asio::awaitable<void> run_all(asio::io_context& io, const options& o, const server_url& url,
                              const std::vector<sweep_point>& points, std::vector<point_result>& results) {
  const bool is_sweep = points.size() > 1;
  for (const auto& point : points) {
    const request_plan plan = make_plan(point.w);
    const client_options client{o.api_key, o.model.value_or(point.w.model.value_or("troupe"))};
    auto c = make_client(io, url, point.w, client);
    co_await c->open();
    const std::string label = is_sweep ? "[" + point.param + "=" + show_number(point.value) + "] " : "";
    // A named value, not a braced temporary: GCC 12 destroys temporaries in a co_await
    // expression twice.
    const run_options run_opts{!o.is_quiet, label};
    const run_result run = co_await run_workload(*c, plan, run_opts);
    co_await c->close();
    run_report report = make_report(run.records, point.w.slo, run.elapsed_s);
    std::printf("%s%s\n", is_sweep ? ("== " + point.param + " = " + show_number(point.value) + "\n").c_str() : "",
                format_table(report, point.w.slo).c_str());
    std::fflush(stdout);
    results.push_back({&point, std::move(report)});
  }
}

std::string result_json(const options& o, const workload& base, const std::vector<point_result>& results) {
  json_writer j;
  j.begin_object();
  j.key("tool").value("troupe-load");
  j.key("url").value(o.url);
  j.key("workload").begin_object();
  j.key("name").value(base.name).key("file").value(o.workload_path);
  j.key("api").value(base.api == api_kind::chat ? "chat" : "completions");
  j.key("loop").value(base.is_open_loop() ? "open" : "closed");
  j.key("seed").value(base.seed);
  j.end_object();
  j.key("sweep");
  if (o.sweep) j.value(*o.sweep); else j.null();
  j.key("runs").begin_array();
  for (const auto& r : results) {
    j.begin_object();
    j.key("param").value(r.point->param).key("value").value(r.point->value);
    j.key("report").raw(report_json(r.report, r.point->w.slo));
    j.end_object();
  }
  j.end_array().end_object();
  return j.str();
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  server_url url;
  workload base;
  std::vector<sweep_point> points;
  try {
    o = parse_args(argc, argv);
    url = parse_server_url(o.url);
    base = load_workload_file(o.workload_path);
    points = sweep_points(base, o.sweep);
    make_plan(base);  // reads the prompt file now, so that its errors come before any connection
  } catch (const usage_error& e) {
    std::fprintf(stderr, "troupe-load: %s\n%s", e.what(), usage_text);
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "troupe-load: %s\n", e.what());
    return 1;
  }

  raise_open_file_limit();
  asio::io_context io(1);
  std::vector<point_result> results;
  std::exception_ptr failure;
  // Stopping the context when run_all ends (or throws) drops whatever a failed start left
  // waiting, e.g. the reader of a connection opened before the next one failed.
  asio::co_spawn(io, run_all(io, o, url, points, results), [&](std::exception_ptr e) {
    failure = e;
    io.stop();
  });
  io.run();
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const connect_error& e) {
      std::fprintf(stderr, "troupe-load: %s\n", e.what());
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "troupe-load: %s\n", e.what());
      return 1;
    }
  }
  if (o.out_path) {
    std::ofstream out(*o.out_path, std::ios::binary);
    out << result_json(o, base, results) << "\n";
    if (!out) {
      std::fprintf(stderr, "troupe-load: cannot write %s\n", o.out_path->c_str());
      return 1;
    }
  }
  for (const auto& r : results) {
    if (r.report.all.num_sent > 0 && r.report.all.num_ok + r.report.all.num_cancelled == 0) {
      std::fprintf(stderr, "troupe-load: no request succeeded at %s = %s\n", r.point->param.c_str(),
                   show_number(r.point->value).c_str());
      return 3;
    }
  }
  return 0;
}
