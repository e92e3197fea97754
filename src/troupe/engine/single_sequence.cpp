#include "troupe/engine/single_sequence.hpp"

#include <algorithm>
#include <chrono>
#include <numeric>
#include <string>

#include "troupe/model/error.hpp"

namespace troupe {

namespace {
using clock_type = std::chrono::steady_clock;
double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}
}  // namespace

single_sequence::single_sequence(backend& b, std::vector<int32_t> eog_ids, int32_t max_chunk_tokens)
    : backend_(b), eog_ids_(std::move(eog_ids)), max_chunk_tokens_(std::max(1, max_chunk_tokens)) {
  const auto shape = backend_.kv_shape();
  block_table_.resize(shape.num_blocks);
  std::iota(block_table_.begin(), block_table_.end(), 0);
}

void single_sequence::ensure_capacity(int64_t num_positions) const {
  const auto shape = backend_.kv_shape();
  const int64_t capacity = std::min<int64_t>((int64_t)shape.num_blocks * shape.block_size,
                                             backend_.config().context_length);
  if (num_positions > capacity) {
    throw error(error_code::context_overflow, "the sequence needs " + std::to_string(num_positions) +
                                                  " positions but the context holds " + std::to_string(capacity));
  }
}

sequence_step single_sequence::make_step(int32_t start_pos, std::vector<int32_t> chunk) const {
  sequence_step s;
  s.seq_id = 0;
  s.start_pos = start_pos;
  const auto bs = backend_.kv_shape().block_size;
  const size_t blocks = (size_t)(start_pos + (int32_t)chunk.size() + bs - 1) / bs;
  s.block_table.assign(block_table_.begin(), block_table_.begin() + (ptrdiff_t)blocks);
  s.tokens = std::move(chunk);
  return s;
}

finish_reason single_sequence::generate(const std::vector<int32_t>& prompt, const sampling_params& params,
                                        const std::function<bool(int32_t)>& on_token, generation_stats& stats) {
  if (prompt.empty()) throw error(error_code::invalid_argument, "the prompt is empty");
  params.validate(backend_.config().vocab_size);
  ensure_capacity((int64_t)prompt.size() + 1);

  // Reuse the cached prefix, but always feed at least the last prompt token.
  size_t common = 0;
  while (common < fed_.size() && common + 1 < prompt.size() && fed_[common] == prompt[common]) ++common;
  fed_.resize(common);
  stats = {};
  stats.num_cached_tokens = (int64_t)common;
  stats.num_prompt_tokens = (int64_t)(prompt.size() - common);

  std::vector<int32_t> output;
  auto penalty_window = [&](sequence_step& s) {
    const int32_t n = params.penalty_last_n;
    std::vector<int32_t> all(prompt);
    all.insert(all.end(), output.begin(), output.end());
    const size_t keep = n < 0 ? all.size() : std::min(all.size(), (size_t)n);
    s.penalty_tokens.assign(all.end() - (ptrdiff_t)keep, all.end());
    const int64_t from_prompt = (int64_t)prompt.size() - (int64_t)(all.size() - keep);
    s.num_prompt_penalty_tokens = (int32_t)std::max<int64_t>(0, from_prompt);
  };
  const bool wants_penalties = params.has_penalties();

  const auto start = clock_type::now();
  int32_t next = -1;
  for (size_t pos = common; pos < prompt.size();) {
    const size_t n = std::min(prompt.size() - pos, (size_t)max_chunk_tokens_);
    auto s = make_step((int32_t)pos, std::vector<int32_t>(prompt.begin() + (ptrdiff_t)pos, prompt.begin() + (ptrdiff_t)(pos + n)));
    s.wants_sample = pos + n == prompt.size();
    s.params = params;
    if (s.wants_sample && wants_penalties) penalty_window(s);
    batch_plan plan;
    plan.sequences.push_back(std::move(s));
    const auto r = backend_.step(plan);
    fed_.insert(fed_.end(), prompt.begin() + (ptrdiff_t)pos, prompt.begin() + (ptrdiff_t)(pos + n));
    next = r.outputs[0].token;
    pos += n;
  }
  stats.prefill_seconds = seconds_since(start);
  const auto decode_start = clock_type::now();

  auto is_stop = [&](int32_t t) {
    if (!params.ignore_eos && std::find(eog_ids_.begin(), eog_ids_.end(), t) != eog_ids_.end()) return true;
    return std::find(params.stop_token_ids.begin(), params.stop_token_ids.end(), t) != params.stop_token_ids.end();
  };
  finish_reason reason = finish_reason::length;
  const int64_t capacity_left = std::min<int64_t>((int64_t)backend_.kv_shape().num_blocks * backend_.kv_shape().block_size,
                                                  backend_.config().context_length) - (int64_t)fed_.size();
  while (true) {
    output.push_back(next);
    ++stats.num_generated_tokens;
    if (is_stop(next)) { reason = finish_reason::stop; break; }
    if (!on_token(next)) { reason = finish_reason::cancelled; break; }
    if ((int64_t)output.size() >= params.max_tokens || (int64_t)output.size() >= capacity_left) break;
    auto s = make_step((int32_t)fed_.size(), {next});
    s.params = params;
    s.sample_index = output.size();
    if (wants_penalties) penalty_window(s);
    batch_plan plan;
    plan.sequences.push_back(std::move(s));
    const auto r = backend_.step(plan);
    fed_.push_back(next);
    next = r.outputs[0].token;
  }
  stats.decode_seconds = seconds_since(decode_start);
  return reason;
}

std::vector<float> single_sequence::score(const std::vector<int32_t>& tokens) {
  ensure_capacity((int64_t)tokens.size());
  fed_.clear();
  std::vector<float> logits;
  logits.reserve(tokens.size() * (size_t)backend_.config().vocab_size);
  for (size_t pos = 0; pos < tokens.size();) {
    const size_t n = std::min(tokens.size() - pos, (size_t)max_chunk_tokens_);
    auto s = make_step((int32_t)pos, std::vector<int32_t>(tokens.begin() + (ptrdiff_t)pos, tokens.begin() + (ptrdiff_t)(pos + n)));
    s.wants_sample = false;
    s.wants_all_logits = true;
    batch_plan plan;
    plan.sequences.push_back(std::move(s));
    auto r = backend_.step(plan);
    logits.insert(logits.end(), r.outputs[0].logits.begin(), r.outputs[0].logits.end());
    fed_.insert(fed_.end(), tokens.begin() + (ptrdiff_t)pos, tokens.begin() + (ptrdiff_t)(pos + n));
    pos += n;
  }
  return logits;
}

}  // namespace troupe
