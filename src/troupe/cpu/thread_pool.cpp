// thread_pool: persistent pinned workers; a run publishes (fn, ctx) and bumps a generation
// counter, workers spin on it for a while and then sleep on the condition variable.
#include "troupe/cpu/thread_pool.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace troupe::cpu {
namespace {

// Long enough to bridge the gaps between one step's parallel sections, short enough that an
// idle server gives its cores back almost at once.
constexpr auto spin_duration = std::chrono::microseconds(1000);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
#endif
  return cpus;
}

// Pins the calling thread to one CPU; failure (containers, restricted masks) is harmless.
void pin_to_cpu([[maybe_unused]] int cpu) {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set);
#endif
}

}  // namespace

thread_pool::thread_pool(int num_threads) {
  const std::vector<int> cpus = allowed_cpus();
  if (num_threads <= 0) {
    num_threads = !cpus.empty() ? static_cast<int>(cpus.size())
                                : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  num_threads_ = num_threads;
  workers_.reserve(static_cast<size_t>(num_threads_ - 1));
  // The caller is thread 0 and keeps its own affinity; worker i takes the i-th allowed CPU.
  for (int i = 1; i < num_threads_; ++i) {
    const int cpu = cpus.empty() ? -1 : cpus[static_cast<size_t>(i) % cpus.size()];
    workers_.emplace_back([this, i, cpu] {
      if (cpu >= 0 && num_threads_ <= static_cast<int>(allowed_cpus().size())) pin_to_cpu(cpu);
      worker_loop(i);
    });
  }
}

thread_pool::~thread_pool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_.store(true);
    generation_.fetch_add(2);
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

namespace {
// generation_ advances by 2 per run; bit 0 set marks a run_chunks run.
constexpr uint64_t every_thread_kind = 0;
constexpr uint64_t chunked_kind = 1;

void wait_until(const std::atomic<int64_t>& value, int64_t target) {
  for (uint32_t spins = 0; value.load(std::memory_order_acquire) != target; ++spins) {
    if (spins < 4096) cpu_relax();
    else std::this_thread::yield();  // a worker was descheduled: let it run
  }
}
}  // namespace

void thread_pool::publish(uint64_t kind) {
  const uint64_t current = generation_.load(std::memory_order_relaxed);
  generation_.store(((current | 1u) + 1u) | kind, std::memory_order_seq_cst);
  if (num_sleeping_.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    wake_.notify_all();
  }
}

void thread_pool::run_erased(void* ctx, erased_fn fn) {
  if (num_threads_ == 1) {
    fn(ctx, 0, 1);
    return;
  }
  task_ctx_ = ctx;
  task_fn_ = fn;
  num_pending_.store(num_threads_ - 1, std::memory_order_relaxed);
  publish(every_thread_kind);
  fn(ctx, 0, num_threads_);
  for (uint32_t spins = 0; num_pending_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < 4096) cpu_relax();
    else std::this_thread::yield();  // a worker was descheduled: let it run
  }
}

namespace {
// claim_ = generation (low 24 bits) << 40 | num_chunks << 20 | next chunk: a claim is valid
// only against the chunk count of its own run, read in the same atomic word.
constexpr int chunk_bits = 20;
constexpr uint64_t chunk_mask = (uint64_t{1} << chunk_bits) - 1;
constexpr int64_t max_chunks_per_run = static_cast<int64_t>(chunk_mask);

uint64_t claim_tag(uint64_t generation) { return (generation & 0xffffffu) << (2 * chunk_bits); }
}  // namespace

void thread_pool::run_chunks_erased(int64_t num_chunks, void* ctx, chunk_fn fn) {
  if (num_chunks <= 0) return;
  if (num_threads_ == 1 || num_chunks == 1) {
    for (int64_t c = 0; c < num_chunks; ++c) fn(ctx, c);
    return;
  }
  for (int64_t base = 0; base < num_chunks; base += max_chunks_per_run) {
    const int64_t count = std::min(max_chunks_per_run, num_chunks - base);
    const uint64_t next = ((generation_.load(std::memory_order_relaxed) | 1u) + 1u) | chunked_kind;
    chunk_ctx_.store(ctx, std::memory_order_relaxed);
    chunk_fn_.store(fn, std::memory_order_relaxed);
    num_chunks_.store(base, std::memory_order_relaxed);  // first chunk index of this batch
    num_chunks_done_.store(0, std::memory_order_relaxed);
    claim_.store(claim_tag(next) | static_cast<uint64_t>(count) << chunk_bits, std::memory_order_release);
    publish(chunked_kind);
    claim_chunks(next);
    wait_until(num_chunks_done_, count);
  }
}

void thread_pool::claim_chunks(uint64_t generation) {
  const uint64_t tag = claim_tag(generation);
  // What is read here may already belong to a later run; a successful claim below proves
  // it does not (the run cannot finish while one of its chunks is unclaimed).
  void* const ctx = chunk_ctx_.load(std::memory_order_relaxed);
  const chunk_fn fn = chunk_fn_.load(std::memory_order_relaxed);
  const int64_t base = num_chunks_.load(std::memory_order_relaxed);
  uint64_t seen = claim_.load(std::memory_order_acquire);
  for (;;) {
    if ((seen >> (2 * chunk_bits)) != (tag >> (2 * chunk_bits))) return;  // another run's claims
    const uint64_t chunk = seen & chunk_mask;
    if (chunk >= ((seen >> chunk_bits) & chunk_mask)) return;  // all claimed
    if (!claim_.compare_exchange_weak(seen, seen + 1, std::memory_order_acq_rel, std::memory_order_acquire))
      continue;
    fn(ctx, base + static_cast<int64_t>(chunk));
    num_chunks_done_.fetch_add(1, std::memory_order_acq_rel);
    seen = claim_.load(std::memory_order_acquire);
  }
}

void thread_pool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t now = generation_.load(std::memory_order_acquire);
    if (now == seen) {
      const auto deadline = std::chrono::steady_clock::now() + spin_duration;
      for (uint32_t spins = 1; now == seen; ++spins) {
        cpu_relax();
        // Yielding now and then keeps an oversubscribed machine (more runnable threads than
        // cores) from stalling the thread that is about to publish the next run.
        if (spins % 1024 == 0) std::this_thread::yield();
        now = generation_.load(std::memory_order_acquire);
        if (now == seen && spins % 256 == 0 && std::chrono::steady_clock::now() > deadline) {
          std::unique_lock<std::mutex> lock(mutex_);
          num_sleeping_.fetch_add(1, std::memory_order_seq_cst);
          wake_.wait(lock, [&] { return generation_.load(std::memory_order_seq_cst) != seen; });
          num_sleeping_.fetch_sub(1, std::memory_order_relaxed);
          now = generation_.load(std::memory_order_acquire);
        }
      }
    }
    seen = now;
    if (stopping_.load(std::memory_order_acquire)) return;
    if ((now & 1u) == chunked_kind) {
      claim_chunks(now);
      continue;
    }
    task_fn_(task_ctx_, index, num_threads_);
    num_pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace troupe::cpu
