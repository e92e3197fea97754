#include "troupe/model/stand_in_backend.hpp"

#include <algorithm>
#include <thread>

#include "troupe/model/error.hpp"

namespace troupe {

using clock_type = std::chrono::steady_clock;

stand_in_backend::stand_in_backend(model_config config, int32_t num_blocks, int32_t block_size,
                                   std::chrono::microseconds step_time, std::vector<int32_t> eog_ids)
    : config_(std::move(config)),
      num_blocks_(num_blocks),
      block_size_(block_size),
      step_time_(step_time),
      eog_ids_(std::move(eog_ids)) {
  if (config_.vocab_size < 2 + static_cast<int32_t>(eog_ids_.size())) {
    throw error(error_code::invalid_argument, "the stand-in backend needs a vocabulary of more than its end tokens");
  }
  if (num_blocks_ <= 0 || block_size_ <= 0) {
    throw error(error_code::invalid_argument, "the stand-in backend needs KV blocks to report");
  }
  // Low ids are often special tokens: start past them where the vocabulary allows.
  first_token_ = std::min<int32_t>(100, config_.vocab_size / 2);
  std::sort(eog_ids_.begin(), eog_ids_.end());
}

int32_t stand_in_backend::token_after(int32_t last, uint64_t sample_index) const {
  const auto span = static_cast<uint32_t>(config_.vocab_size - first_token_);
  auto t = first_token_ + static_cast<int32_t>((7919u * static_cast<uint32_t>(last) +
                                                31u * static_cast<uint32_t>(sample_index)) % span);
  while (std::binary_search(eog_ids_.begin(), eog_ids_.end(), t)) {
    t = first_token_ + static_cast<int32_t>(static_cast<uint32_t>(t - first_token_ + 1) % span);
  }
  return t;
}

step_result stand_in_backend::step(const batch_plan& plan) {
  const auto start = clock_type::now();
  {
    std::lock_guard lock(gaps_mutex_);
    if (last_end_) gaps_ns_.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(start - *last_end_).count());
  }
  step_result r;
  r.outputs.reserve(plan.sequences.size());
  for (const auto& s : plan.sequences) {
    sequence_output o;
    o.seq_id = s.seq_id;
    if (s.num_draft_tokens > 0) {
      // Proposals are verified against the stand-in's own rule, as a model verifies them:
      // each is accepted while it is the token the rule answers after what came before it.
      const auto first = static_cast<ptrdiff_t>(s.tokens.size()) - s.num_draft_tokens;
      if (!s.wants_sample || first < 1) throw error(error_code::bad_plan, "a speculative step without a known token");
      if (std::find(s.tokens.begin() + first, s.tokens.end(), draft_slot) != s.tokens.end()) {
        throw error(error_code::unsupported, "the stand-in backend has no draft model to fill proposal slots");
      }
      uint64_t index = s.sample_index;
      int32_t sample = token_after(s.tokens[static_cast<size_t>(first - 1)], index);
      for (auto i = static_cast<size_t>(first); i < s.tokens.size() && s.tokens[i] == sample; ++i) {
        o.accepted.push_back({sample, 0.0f, {}});
        sample = token_after(sample, ++index);
      }
      o.token = sample;
    } else if (s.wants_sample) {
      o.token = token_after(s.tokens.empty() ? 0 : s.tokens.back(), s.sample_index);
    }
    r.outputs.push_back(std::move(o));
  }
  std::this_thread::sleep_until(start + step_time_);
  const auto end = clock_type::now();
  busy_ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(end - start).count();
  std::lock_guard lock(gaps_mutex_);
  last_end_ = end;
  return r;
}

std::pair<double, double> stand_in_backend::take_gap_percentiles() {
  std::vector<int64_t> gaps;
  {
    std::lock_guard lock(gaps_mutex_);
    gaps.swap(gaps_ns_);
    last_end_.reset();
  }
  if (gaps.empty()) return {0, 0};
  std::sort(gaps.begin(), gaps.end());
  const auto at = [&](double q) {
    return static_cast<double>(gaps[static_cast<size_t>(q * static_cast<double>(gaps.size() - 1))]) * 1e-3;
  };
  return {at(0.5), at(0.9)};
}

}  // namespace troupe
