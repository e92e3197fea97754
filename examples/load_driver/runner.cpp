// Open- and closed-loop arrival, the stop rule, and the progress line.
#include "runner.hpp"

#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <cstdio>
#include <limits>
#include <memory>

#include "failure_watch.hpp"

namespace troupe::load {
namespace {

namespace asio = boost::asio;
constexpr auto no_throw = asio::as_tuple(asio::use_awaitable);

asio::steady_timer::duration to_duration(double ms) {
  return std::chrono::duration_cast<asio::steady_timer::duration>(std::chrono::duration<double, std::milli>(ms));
}

asio::awaitable<void> sleep_ms(double ms) {
  if (ms <= 0) co_return;
  asio::steady_timer t(co_await asio::this_coro::executor, to_duration(ms));
  co_await t.async_wait(no_throw);
}

// Shared state of one run, held by every coroutine of the run (the progress line may wake
// once more after run_workload has returned).
struct run_state {
  explicit run_state(const asio::any_io_executor& executor)
      : all_done(executor, asio::steady_timer::time_point::max()),
        progress_wake(executor, asio::steady_timer::time_point::max()) {}

  stream_client* client = nullptr;
  const request_plan* plan = nullptr;
  double start_ms = 0;
  double deadline_ms = std::numeric_limits<double>::infinity();
  uint64_t max_requests = std::numeric_limits<uint64_t>::max();
  uint64_t num_issued = 0;
  int64_t num_active = 0;       // requests in flight (open loop) or users running (closed)
  int64_t num_in_flight = 0;
  int64_t num_ok = 0, num_cancelled = 0, num_failed = 0, num_tokens = 0;
  double last_end_ms = 0;
  std::vector<request_record> records;
  asio::steady_timer all_done;       // cancelled when num_active drops to 0
  asio::steady_timer progress_wake;  // cancelled to stop the progress line
  bool is_running = true;
  std::string label;

  // A server that went away mid-run, or a wrong URL, fails each request at once: the first
  // failure is shown, and a run of them stops the run rather than spin through its duration.
  failure_watch failures;

  bool is_server_gone() const { return failures.should_stop(); }
  bool can_issue() const {
    return num_issued < max_requests && run_clock_ms() < deadline_ms && !is_server_gone();
  }

  asio::awaitable<void> one_request(uint64_t index) {
    const request_spec spec = plan->make_request(index);
    ++num_in_flight;
    request_record r = co_await client->send(spec);
    --num_in_flight;
    if (r.result == outcome::ok) {
      ++num_ok;
      for (const auto& d : r.deltas) num_tokens += d.num_tokens;
    } else if (r.result == outcome::cancelled) {
      ++num_cancelled;
    } else {
      ++num_failed;
    }
    if (const std::string line = failures.on_result(r); !line.empty()) {
      std::fprintf(stderr, "%stroupe-load: %s%s\n", isatty(STDERR_FILENO) ? "\n" : "", label.c_str(), line.c_str());
    }
    last_end_ms = std::max(last_end_ms, r.ended_ms);
    records.push_back(std::move(r));
  }

  void finish_one() {
    if (--num_active == 0) all_done.cancel();
  }
};

asio::awaitable<void> open_request(std::shared_ptr<run_state> s, uint64_t index) {
  co_await s->one_request(index);
  s->finish_one();
}

asio::awaitable<void> user_loop(std::shared_ptr<run_state> s) {
  while (s->can_issue()) {
    const uint64_t index = s->num_issued++;
    co_await s->one_request(index);
    co_await sleep_ms(s->plan->think_time_ms(index));
  }
  s->finish_one();
}

asio::awaitable<void> progress_loop(std::shared_ptr<run_state> state) {
  run_state& s = *state;
  const bool is_tty = isatty(STDERR_FILENO);
  const double every_ms = is_tty ? 500 : 5000;
  while (s.is_running) {
    s.progress_wake.expires_after(to_duration(every_ms));
    co_await s.progress_wake.async_wait(no_throw);
    if (!s.is_running) break;
    const double t_s = (run_clock_ms() - s.start_ms) / 1000.0;
    std::fprintf(stderr, "%s%s%6.1fs  sent %llu  ok %lld  cancelled %lld  failed %lld  in flight %lld  %.1f tok/s%s",
                 is_tty ? "\r" : "", s.label.c_str(), t_s, static_cast<unsigned long long>(s.num_issued),
                 static_cast<long long>(s.num_ok), static_cast<long long>(s.num_cancelled),
                 static_cast<long long>(s.num_failed), static_cast<long long>(s.num_in_flight),
                 t_s > 0 ? static_cast<double>(s.num_tokens) / t_s : 0.0, is_tty ? "   " : "\n");
    std::fflush(stderr);
  }
}

}  // namespace

asio::awaitable<run_result> run_workload(stream_client& client, const request_plan& plan, const run_options& options) {
  const auto executor = co_await asio::this_coro::executor;
  const workload& w = plan.spec();
  const auto state = std::make_shared<run_state>(executor);
  run_state& s = *state;
  s.client = &client;
  s.plan = &plan;
  s.label = options.label;
  s.start_ms = run_clock_ms();
  if (w.duration_s) s.deadline_ms = s.start_ms + *w.duration_s * 1000.0;
  if (w.num_requests) s.max_requests = static_cast<uint64_t>(*w.num_requests);

  if (options.show_progress) asio::co_spawn(executor, progress_loop(state), asio::detached);

  s.num_active = 1;  // the arrival loop below holds the run open until it has issued all
  if (w.is_open_loop()) {
    double next_ms = s.start_ms;
    for (uint64_t index = 0; s.num_issued < s.max_requests; ++index) {
      if (index > 0) next_ms += plan.arrival_gap_ms(index);
      if (next_ms >= s.deadline_ms || s.is_server_gone()) break;
      co_await sleep_ms(next_ms - run_clock_ms());
      ++s.num_issued;
      ++s.num_active;
      asio::co_spawn(executor, open_request(state, index), asio::detached);
    }
  } else {
    for (int64_t u = 0; u < w.closed->num_users; ++u) {
      ++s.num_active;
      asio::co_spawn(executor, user_loop(state), asio::detached);
    }
  }
  if (--s.num_active > 0) co_await s.all_done.async_wait(no_throw);
  s.is_running = false;
  s.progress_wake.cancel();
  if (options.show_progress && isatty(STDERR_FILENO) && run_clock_ms() - s.start_ms >= 500) std::fprintf(stderr, "\n");
  if (s.is_server_gone()) {
    std::fprintf(stderr, "troupe-load: %sstopped sending after %lld failures in a row (the last: %s)\n",
                 options.label.c_str(), static_cast<long long>(s.failures.num_in_a_row()),
                 s.failures.last_reason().c_str());
  }

  run_result result;
  result.records = std::move(s.records);
  double first_send_ms = s.last_end_ms;
  for (const auto& r : result.records) first_send_ms = std::min(first_send_ms, r.sent_ms);
  result.elapsed_s = std::max(0.0, (s.last_end_ms - first_send_ms) / 1000.0);
  co_return result;
}

}  // namespace troupe::load
