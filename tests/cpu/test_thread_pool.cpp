// Specification of cpu/thread_pool: each run calls every thread index exactly once, runs
// repeat thousands of times, sleeping workers wake, parallel_for covers its range exactly.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "troupe/cpu/thread_pool.hpp"

namespace troupe::cpu {
namespace {

TEST_CASE("thread_pool runs every index exactly once per run, over thousands of runs") {
  for (int num_threads : {1, 2, 3, 4}) {
    thread_pool pool(num_threads);
    REQUIRE(pool.num_threads() == num_threads);
    std::vector<std::atomic<int>> calls(static_cast<size_t>(num_threads));
    const int num_runs = num_threads <= 2 ? 5000 : 500;  // more threads than cores: slow, not wrong
    for (int run = 0; run < num_runs; ++run) {
      pool.run([&](int index, int count) {
        CHECK(count == num_threads);
        calls[static_cast<size_t>(index)].fetch_add(1);
      });
    }
    for (auto& c : calls) CHECK(c.load() == num_runs);
  }
}

TEST_CASE("thread_pool's run returns only after every thread has finished its part") {
  thread_pool pool(2);
  for (int run = 0; run < 2000; ++run) {
    std::vector<int> done(2, 0);  // plain ints: a race here would show under TSan
    pool.run([&](int index, int) { done[static_cast<size_t>(index)] = run + 1; });
    CHECK(done[0] == run + 1);
    CHECK(done[1] == run + 1);
  }
}

TEST_CASE("thread_pool wakes workers that went to sleep between runs") {
  thread_pool pool(3);
  for (int run = 0; run < 5; ++run) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // longer than the spin phase
    std::atomic<int> calls{0};
    pool.run([&](int, int) { calls.fetch_add(1); });
    CHECK(calls.load() == 3);
  }
}

TEST_CASE("run_chunks calls every chunk exactly once per run, over thousands of runs") {
  for (int num_threads : {1, 2, 3}) {
    thread_pool pool(num_threads);
    const int num_runs = num_threads <= 2 ? 3000 : 300;
    for (int run = 0; run < num_runs; ++run) {
      const int64_t num_chunks = run % 13;  // 0 and 1 included
      std::vector<std::atomic<int>> calls(static_cast<size_t>(num_chunks));
      pool.run_chunks(num_chunks, [&](int64_t chunk) { calls[static_cast<size_t>(chunk)].fetch_add(1); });
      for (auto& c : calls) REQUIRE(c.load() == 1);
    }
  }
}

TEST_CASE("run_chunks returns only after every chunk's writes are done") {
  thread_pool pool(2);
  for (int run = 0; run < 2000; ++run) {
    std::vector<int> out(8, 0);  // plain ints: a missing happens-before would show under TSan
    pool.run_chunks(8, [&](int64_t chunk) { out[static_cast<size_t>(chunk)] = run + 1; });
    for (int v : out) REQUIRE(v == run + 1);
  }
}

TEST_CASE("run and run_chunks interleave, also with workers that fell asleep") {
  thread_pool pool(3);
  for (int run = 0; run < 400; ++run) {
    if (run % 100 == 99) std::this_thread::sleep_for(std::chrono::milliseconds(3));
    std::atomic<int> every{0};
    pool.run([&](int, int) { every.fetch_add(1); });
    REQUIRE(every.load() == 3);
    std::atomic<int> chunks{0};
    pool.run_chunks(5, [&](int64_t) { chunks.fetch_add(1); });
    REQUIRE(chunks.load() == 5);
  }
}

TEST_CASE("parallel_for covers 0..n exactly once in contiguous ranges") {
  thread_pool pool(3);
  for (int64_t n : {0, 1, 2, 3, 7, 100, 12345}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    pool.parallel_for(n, [&](int64_t begin, int64_t end) {
      CHECK(begin < end);
      for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
    });
    for (auto& h : hits) CHECK(h.load() == 1);
  }
}

TEST_CASE("thread_pool with the default size uses at least one thread and can be destroyed idle") {
  thread_pool pool;
  CHECK(pool.num_threads() >= 1);
  thread_pool unused(2);
}

}  // namespace
}  // namespace troupe::cpu
