#include "util/gated_backend.hpp"

#include <string>
#include <utility>

#include "troupe/model/error.hpp"

namespace troupe::test {

gated_backend::gated_backend(std::shared_ptr<backend> inner, std::chrono::milliseconds gate_timeout)
    : inner_(std::move(inner)), gate_timeout_(gate_timeout) {
  if (!inner_) throw error(error_code::invalid_argument, "gated_backend: no inner backend");
}

gated_backend::gated_backend(model_config config, int32_t num_blocks, std::chrono::milliseconds gate_timeout)
    : config_(std::move(config)), num_blocks_(num_blocks), gate_timeout_(gate_timeout) {}

const model_config& gated_backend::config() const { return inner_ ? inner_->config() : config_; }

kv_cache_shape gated_backend::kv_shape() const {
  return inner_ ? inner_->kv_shape() : kv_cache_shape{num_blocks_, 16, 1};
}

step_result gated_backend::step(const batch_plan& plan) {
  {
    std::unique_lock lock(mutex_);
    ++num_held_;
    cv_.notify_all();  // wait_held
    const bool passed = cv_.wait_for(lock, gate_timeout_, [&] { return open_ || permits_ > 0; });
    --num_held_;
    if (!passed) {
      timed_out_ = true;
      cv_.notify_all();
      throw error(error_code::internal, "gated_backend: a step waited " + std::to_string(gate_timeout_.count()) +
                                            " ms at a closed gate (did the test forget to open it?)");
    }
    if (!open_) --permits_;
    ++num_steps_;
    cv_.notify_all();  // wait_steps
  }
  if (inner_) return inner_->step(plan);
  step_result r;
  for (const auto& s : plan.sequences) {
    sequence_output o;
    o.seq_id = s.seq_id;
    if (s.wants_sample && !s.tokens.empty()) o.token = (s.tokens.back() + 1) % config_.vocab_size;
    r.outputs.push_back(std::move(o));
  }
  return r;
}

void gated_backend::copy_blocks(const std::vector<std::pair<int32_t, int32_t>>& pairs) {
  if (inner_) inner_->copy_blocks(pairs);
}

int32_t gated_backend::num_swap_blocks() const { return inner_ ? inner_->num_swap_blocks() : 0; }

void gated_backend::swap_out(const std::vector<std::pair<int32_t, int32_t>>& device_to_host) {
  if (inner_) inner_->swap_out(device_to_host);
}

void gated_backend::swap_in(const std::vector<std::pair<int32_t, int32_t>>& host_to_device) {
  if (inner_) inner_->swap_in(host_to_device);
}

void gated_backend::close() {
  std::lock_guard lock(mutex_);
  open_ = false;
  permits_ = 0;
}

void gated_backend::open() {
  std::lock_guard lock(mutex_);
  open_ = true;
  cv_.notify_all();
}

void gated_backend::release(int n) {
  std::lock_guard lock(mutex_);
  permits_ += n;
  cv_.notify_all();
}

bool gated_backend::wait_held(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] { return num_held_ > 0 && !open_ && permits_ == 0; });
}

bool gated_backend::wait_steps(int64_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] { return num_steps_ >= n; });
}

int64_t gated_backend::num_steps() const {
  std::lock_guard lock(mutex_);
  return num_steps_;
}

bool gated_backend::is_held() const {
  std::lock_guard lock(mutex_);
  return num_held_ > 0 && !open_ && permits_ == 0;
}

bool gated_backend::timed_out() const {
  std::lock_guard lock(mutex_);
  return timed_out_;
}

}  // namespace troupe::test
