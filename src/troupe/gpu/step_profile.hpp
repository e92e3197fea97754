// Where a CUDA step's time goes, for tuning on a GPU machine: with TROUPE_CUDA_PROFILE set
// in the environment, every kernel family's launches are bracketed by CUDA events, and after
// each step the elapsed device time is added up per family. Consecutive steps of the same
// shape (decode steps of n rows, or mixed steps) form a run; when the shape changes, and at
// the end, one line per run goes to stderr: device time per step by family and host wall
// time per step. Off (the default) it costs one branch per launch.
#pragma once
#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace troupe::gpu {

enum class kernel_family : int {
  upload, embed, norm, gemv, dequant, gemm, rope_kv, attention, elementwise, head, sample, copy_back, graph, count
};

class step_profile {
 public:
  step_profile();  // on when TROUPE_CUDA_PROFILE is set
  ~step_profile();
  step_profile(const step_profile&) = delete;
  step_profile& operator=(const step_profile&) = delete;

  bool on() const { return on_; }

  // Runs fn (which enqueues work on stream s) and times that work as `family`.
  template <class F>
  void timed(kernel_family family, cudaStream_t s, F&& fn) {
    if (!on_ || capturing_ || depth_ > 0) {  // nested: the outer family takes the time
      fn();
      return;
    }
    const auto a = take(), b = take();
    cudaEventRecord(a, s);
    ++depth_;
    try {
      fn();
    } catch (...) {
      --depth_;
      throw;
    }
    --depth_;
    cudaEventRecord(b, s);
    pending_.push_back({family, {a, b}});
  }

  // Graph capture records no events (they would become graph nodes).
  void set_capturing(bool capturing) { capturing_ = capturing; }

  // After the step's stream synchronized: adds its timings to the run of `shape` (rows, and
  // whether every row was a decode token), printing the previous run when the shape changed.
  void end_step(int32_t rows, bool decode_only, double host_wall_us);

 private:
  cudaEvent_t take();
  void print_run();

  bool on_ = false, capturing_ = false;
  int depth_ = 0;
  std::vector<cudaEvent_t> free_events_;
  std::vector<std::pair<kernel_family, std::pair<cudaEvent_t, cudaEvent_t>>> pending_;
  int32_t run_rows_ = -1;
  bool run_decode_ = false;
  int64_t run_steps_ = 0;
  double run_wall_us_ = 0.0;
  std::array<double, (size_t)kernel_family::count> run_us_{};
};

}  // namespace troupe::gpu
