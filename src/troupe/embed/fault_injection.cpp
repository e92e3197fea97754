// The stuck-step wrapper behind TROUPE_TEST_FAULT_STUCK_STEP (tests only).
#include "troupe/embed/fault_injection.hpp"

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "troupe/model/error.hpp"

namespace troupe {
namespace {

class stuck_step_backend final : public backend {
 public:
  stuck_step_backend(std::shared_ptr<backend> inner, long stuck_step) : inner_(std::move(inner)), stuck_step_(stuck_step) {}
  const model_config& config() const override { return inner_->config(); }
  kv_cache_shape kv_shape() const override { return inner_->kv_shape(); }
  step_result step(const batch_plan& plan) override {
    if (++num_steps_ == stuck_step_) {
      for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
    }
    return inner_->step(plan);
  }
  void copy_blocks(const std::vector<std::pair<int32_t, int32_t>>& pairs) override { inner_->copy_blocks(pairs); }
  int32_t num_swap_blocks() const override { return inner_->num_swap_blocks(); }
  void swap_out(const std::vector<std::pair<int32_t, int32_t>>& pairs) override { inner_->swap_out(pairs); }
  void swap_in(const std::vector<std::pair<int32_t, int32_t>>& pairs) override { inner_->swap_in(pairs); }
  double attention_efficiency() const override { return inner_->attention_efficiency(); }
  bool supports_speculation() const override { return inner_->supports_speculation(); }
  bool has_draft_model() const override { return inner_->has_draft_model(); }

 private:
  std::shared_ptr<backend> inner_;
  long stuck_step_;
  long num_steps_ = 0;
};

}  // namespace

std::shared_ptr<backend> with_injected_faults(std::shared_ptr<backend> b) {
  const char* text = std::getenv("TROUPE_TEST_FAULT_STUCK_STEP");
  if (text == nullptr || *text == '\0') return b;
  char* end = nullptr;
  const long n = std::strtol(text, &end, 10);
  if (*end != '\0' || n < 1) {
    throw error(error_code::invalid_argument,
                std::string("TROUPE_TEST_FAULT_STUCK_STEP (fault injection for tests) must be a step number >= 1, got '") +
                    text + "'");
  }
  return std::make_shared<stuck_step_backend>(std::move(b), n);
}

}  // namespace troupe
