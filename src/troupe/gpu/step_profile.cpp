// The CUDA step profiler (step_profile.hpp).
#include "troupe/gpu/step_profile.hpp"

#include <cstdio>
#include <cstdlib>

namespace troupe::gpu {

namespace {

const char* family_name(kernel_family f) {
  static const char* names[] = {"upload", "embed",       "norm", "gemv",   "dequant",   "gemm", "rope_kv",
                                "attention", "elementwise", "head", "sample", "copy_back", "graph"};
  return names[(int)f];
}

}  // namespace

step_profile::step_profile() : on_(std::getenv("TROUPE_CUDA_PROFILE") != nullptr) {}

step_profile::~step_profile() {
  if (!on_) return;
  print_run();
  for (auto e : free_events_) cudaEventDestroy(e);
}

cudaEvent_t step_profile::take() {
  if (free_events_.empty()) {
    cudaEvent_t e = nullptr;
    cudaEventCreate(&e);
    return e;
  }
  const auto e = free_events_.back();
  free_events_.pop_back();
  return e;
}

void step_profile::end_step(int32_t rows, bool decode_only, double host_wall_us) {
  if (!on_) return;
  if (rows != run_rows_ || decode_only != run_decode_) {
    print_run();
    run_rows_ = rows;
    run_decode_ = decode_only;
  }
  for (const auto& [family, events] : pending_) {
    float ms = 0.0f;
    if (cudaEventElapsedTime(&ms, events.first, events.second) == cudaSuccess) run_us_[(size_t)family] += 1000.0 * ms;
    free_events_.push_back(events.first);
    free_events_.push_back(events.second);
  }
  pending_.clear();
  ++run_steps_;
  run_wall_us_ += host_wall_us;
}

void step_profile::print_run() {
  if (run_steps_ == 0) return;
  double device = 0.0;
  for (double us : run_us_) device += us;
  std::string line;
  char part[64];
  for (int f = 0; f < (int)kernel_family::count; ++f) {
    if (run_us_[(size_t)f] <= 0.0) continue;
    std::snprintf(part, sizeof part, " %s %.1f", family_name((kernel_family)f), run_us_[(size_t)f] / (double)run_steps_);
    line += part;
  }
  std::fprintf(stderr,
               "cuda profile: %lld %s steps of %d rows: host wall %.1f us/step, timed device work %.1f us/step:%s\n",
               (long long)run_steps_, run_decode_ ? "decode" : "mixed", run_rows_, run_wall_us_ / (double)run_steps_,
               device / (double)run_steps_, line.c_str());
  run_steps_ = 0;
  run_wall_us_ = 0.0;
  run_us_.fill(0.0);
}

}  // namespace troupe::gpu
