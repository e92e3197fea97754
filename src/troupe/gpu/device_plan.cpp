// Flattening and validating a batch_plan for the device, and assembling its result.
#include "troupe/gpu/device_plan.hpp"

#include <algorithm>
#include <string>

#include "troupe/model/error.hpp"
#include "troupe/model/plan_check.hpp"
#include "troupe/model/sampler_math.hpp"

namespace troupe::gpu {

namespace {

void check_token(const std::string& who, const char* what, int32_t t, int32_t vocab) {
  if (t < 0 || t >= vocab) {
    throw error(error_code::invalid_argument, who + what + " " + std::to_string(t) + " is outside the vocabulary");
  }
}

}  // namespace

device_plan flatten_plan(const batch_plan& plan, const model_config& config, int32_t block_size,
                         int32_t num_blocks) {
  check_plan(plan, config, block_size, num_blocks);
  device_plan out;
  int32_t logit_index = 0;
  for (const auto& s : plan.sequences) {
    const std::string who = "sequence " + std::to_string(s.seq_id) + ": ";
    if (s.num_draft_tokens > 0) {
      throw error(error_code::unsupported, who + "the CUDA backend does not verify proposed tokens (speculative "
                                                 "decoding runs on the CPU backend)");
    }
    if (s.params.grammar) {
      throw error(error_code::unsupported, who + "the CUDA backend does not constrain sampling to a grammar "
                                                 "(structured output runs on the CPU backend)");
    }
    const int64_t blocks_needed = num_blocks_needed(s, block_size);
    const int32_t table = (int32_t)out.block_tables.size();
    out.block_tables.insert(out.block_tables.end(), s.block_table.begin(), s.block_table.begin() + blocks_needed);
    for (size_t i = 0; i < s.tokens.size(); ++i) {
      const int32_t row = (int32_t)out.tokens.size();
      out.tokens.push_back(s.tokens[i]);
      out.positions.push_back(s.start_pos + (int32_t)i);
      out.row_table.push_back(table);
      if (s.wants_all_logits || (s.wants_sample && i + 1 == s.tokens.size())) out.logit_rows.push_back(row);
    }
    const int32_t rows = s.wants_all_logits ? (int32_t)s.tokens.size() : (s.wants_sample ? 1 : 0);
    logit_index += rows;
    if (!s.wants_sample) continue;
    const auto& p = s.params;
    device_sample d;
    d.logit_index = logit_index - 1;
    d.filter = {p.temperature, p.top_p, p.min_p, p.top_k};
    d.seed = p.seed;
    d.sample_index = s.sample_index;
    d.penalty_offset = (int32_t)out.penalty_tokens.size();
    d.num_penalty_tokens = (int32_t)s.penalty_tokens.size();
    d.num_prompt_penalty_tokens = s.num_prompt_penalty_tokens;
    d.penalty_last_n = p.penalty_last_n;
    d.repetition_penalty = p.repetition_penalty;
    d.presence_penalty = p.presence_penalty;
    d.frequency_penalty = p.frequency_penalty;
    for (int32_t t : s.penalty_tokens) check_token(who, "penalty token", t, config.vocab_size);
    out.penalty_tokens.insert(out.penalty_tokens.end(), s.penalty_tokens.begin(), s.penalty_tokens.end());
    d.bias_offset = (int32_t)out.bias_tokens.size();
    d.num_bias = (int32_t)p.logit_bias.size();
    for (const auto& [token, bias] : p.logit_bias) {
      check_token(who, "logit_bias token id", token, config.vocab_size);
      out.bias_tokens.push_back(token);
      out.bias_values.push_back(bias);
    }
    d.stop_offset = (int32_t)out.stop_tokens.size();
    d.min_tokens = p.min_tokens;
    // Only a sequence short of min_tokens needs its stop ids on the device (to ban them).
    if (!can_sample_end(s.sample_index, p.min_tokens)) {
      for (int32_t t : p.stop_token_ids) check_token(who, "stop token id", t, config.vocab_size);
      d.num_stop = (int32_t)p.stop_token_ids.size();
      out.stop_tokens.insert(out.stop_tokens.end(), p.stop_token_ids.begin(), p.stop_token_ids.end());
    }
    d.ignore_eos = p.ignore_eos ? 1 : 0;
    d.num_logprobs = std::clamp(p.num_logprobs, 0, max_device_logprobs);
    out.samples.push_back(d);
  }
  return out;
}

step_result assemble_result(const batch_plan& plan, const device_plan& flat,
                            const std::vector<device_sample_out>& sampled, const std::vector<float>& all_logits,
                            int32_t vocab_size) {
  step_result result;
  result.outputs.resize(plan.sequences.size());
  size_t next_sample = 0;
  int64_t logit_index = 0;
  const int64_t vocab = vocab_size;
  for (size_t si = 0; si < plan.sequences.size(); ++si) {
    const auto& s = plan.sequences[si];
    auto& out = result.outputs[si];
    out.seq_id = s.seq_id;
    const int64_t rows = s.wants_all_logits ? (int64_t)s.tokens.size() : (s.wants_sample ? 1 : 0);
    if (s.wants_all_logits) {
      out.logits.assign(all_logits.begin() + logit_index * vocab, all_logits.begin() + (logit_index + rows) * vocab);
    }
    logit_index += rows;
    if (!s.wants_sample) continue;
    if (next_sample >= sampled.size() || flat.samples.size() != sampled.size()) {
      throw error(error_code::internal, "the device returned fewer samples than the plan asked for");
    }
    const auto& d = sampled[next_sample++];
    out.token = d.token;
    out.logprob = d.logprob;
    std::vector<sampler_candidate> top;
    for (int32_t i = 0; i < std::min(d.num_top, max_device_logprobs); ++i) top.push_back({d.top_logprobs[i], d.top_tokens[i]});
    std::sort(top.begin(), top.end(), ranks_before);
    for (const auto& c : top) out.top_logprobs.push_back({c.token, c.logit});
  }
  return result;
}

}  // namespace troupe::gpu
