// A persistent pool of compute threads, one per core, pinned. run() hands the same function
// to every thread (the caller is thread 0) and returns when all are done; run_chunks()
// lets whichever threads are running claim chunks of work and waits only for the chunks.
// Between the runs of one step the workers spin briefly instead of sleeping, so a layer's
// many small parallel sections do not pay a wake-up each; idle workers sleep on a futex.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace troupe::cpu {

class thread_pool {
 public:
  // num_threads <= 0: one per online core.
  explicit thread_pool(int num_threads = 0);
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(thread_index, num_threads) on every thread and waits. Not reentrant: call it
  // from one thread at a time (the worker actor's).
  template <class Fn>
  void run(Fn&& fn) {
    run_erased(&fn, [](void* ctx, int index, int count) { (*static_cast<Fn*>(ctx))(index, count); });
  }

  // Calls fn(chunk) exactly once for every chunk in [0, num_chunks), in increasing order of
  // claiming, on whichever threads claim them (the caller included), and returns when all
  // chunks are done. A worker that wakes after every chunk is claimed is not waited for, so
  // a descheduled worker (this machine's second vCPU is often busy) delays nothing.
  // Not reentrant, like run().
  template <class Fn>
  void run_chunks(int64_t num_chunks, Fn&& fn) {
    run_chunks_erased(num_chunks, &fn, [](void* ctx, int64_t chunk) { (*static_cast<Fn*>(ctx))(chunk); });
  }

  // Splits [0, n) into num_threads contiguous ranges and calls fn(begin, end) on each.
  template <class Fn>
  void parallel_for(int64_t n, Fn&& fn) {
    run([&](int index, int count) {
      const int64_t begin = n * index / count;
      const int64_t end = n * (index + 1) / count;
      if (begin < end) fn(begin, end);
    });
  }

 private:
  using erased_fn = void (*)(void*, int, int);
  using chunk_fn = void (*)(void*, int64_t);
  void run_erased(void* ctx, erased_fn fn);
  void run_chunks_erased(int64_t num_chunks, void* ctx, chunk_fn fn);
  void claim_chunks(uint64_t generation);
  void publish(uint64_t kind);
  void worker_loop(int index);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> num_pending_{0};
  std::atomic<bool> stopping_{false};
  void* task_ctx_ = nullptr;
  erased_fn task_fn_ = nullptr;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<int> num_sleeping_{0};

  // run_chunks state. generation_'s low bit tells a worker which kind of run it woke for;
  // claim_ packs (generation, chunk count, next chunk) so a late worker's claim on a
  // finished run fails. The fields are atomics because a late worker may read them while
  // the caller already publishes the next run (it then discards what it read).
  std::atomic<uint64_t> claim_{0};
  std::atomic<int64_t> num_chunks_{0};  // index of the first chunk of the current batch
  std::atomic<int64_t> num_chunks_done_{0};
  std::atomic<void*> chunk_ctx_{nullptr};
  std::atomic<chunk_fn> chunk_fn_{nullptr};
};

}  // namespace troupe::cpu
