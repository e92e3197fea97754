#include "troupe/engine/trace.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>

namespace troupe::trace {

namespace {

std::atomic<bool> is_recording{false};

struct thread_buffer {
  std::mutex mutex;  // taken by its thread per span only while recording, and by stop()
  std::vector<span> spans;
  uint32_t thread = 0;
};

struct registry {
  std::mutex mutex;
  std::vector<std::shared_ptr<thread_buffer>> buffers;
};

registry& the_registry() {
  static registry r;
  return r;
}

thread_buffer& this_thread_buffer() {
  thread_local std::shared_ptr<thread_buffer> buffer = [] {
    auto b = std::make_shared<thread_buffer>();
    auto& r = the_registry();
    std::lock_guard lock(r.mutex);
    b->thread = static_cast<uint32_t>(r.buffers.size());
    r.buffers.push_back(b);
    return b;
  }();
  return *buffer;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

const char* name_of(lane l) {
  switch (l) {
    case lane::worker: return "worker";
    case lane::backend: return "backend";
    case lane::scheduler: return "scheduler";
    case lane::fan_out: return "fan_out";
    case lane::request: return "request";
    case lane::batcher: return "batcher";
  }
  return "unknown";
}

void start() {
  auto& r = the_registry();
  std::lock_guard lock(r.mutex);
  for (auto& b : r.buffers) {
    std::lock_guard buffer_lock(b->mutex);
    b->spans.clear();
  }
  is_recording.store(true);
}

std::vector<span> stop() {
  is_recording.store(false);
  std::vector<span> all;
  auto& r = the_registry();
  std::lock_guard lock(r.mutex);
  for (auto& b : r.buffers) {
    std::lock_guard buffer_lock(b->mutex);
    all.insert(all.end(), b->spans.begin(), b->spans.end());
    b->spans.clear();
  }
  std::sort(all.begin(), all.end(), [](const span& x, const span& y) { return x.begin_ns < y.begin_ns; });
  return all;
}

bool is_on() { return is_recording.load(std::memory_order_relaxed); }

scoped_span::scoped_span(lane what) : what_(what) {
  if (is_on()) begin_ns_ = now_ns();
}

scoped_span::~scoped_span() {
  if (begin_ns_ < 0) return;
  const int64_t end = now_ns();
  auto& b = this_thread_buffer();
  std::lock_guard lock(b.mutex);
  b.spans.push_back({what_, b.thread, begin_ns_, end});
}

}  // namespace troupe::trace
