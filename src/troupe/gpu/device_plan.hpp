// A batch_plan flattened into the arrays the CUDA kernels read: per fed token (row) its id,
// position and block-table offset; the concatenated block tables; which rows need logits;
// and one POD record per sampled sequence (sampling_params holds vectors, kernels cannot).
// Validation happens here, before anything reaches the device, with the CPU backend's rules,
// so a malformed plan leaves the KV cache untouched.
#pragma once
#include <cstdint>
#include <vector>

#include "troupe/gpu/math/sample_search.hpp"
#include "troupe/model/backend.hpp"

namespace troupe::gpu {

constexpr int32_t max_device_logprobs = 20;

// What the sampling kernel needs for one sequence; offsets index device_plan's arrays.
struct device_sample {
  int32_t logit_index = 0;  // index into logit_rows
  filter_params filter;
  uint64_t seed = 0;
  uint64_t sample_index = 0;
  int32_t penalty_offset = 0, num_penalty_tokens = 0, num_prompt_penalty_tokens = 0, penalty_last_n = 0;
  float repetition_penalty = 1.0f, presence_penalty = 0.0f, frequency_penalty = 0.0f;
  int32_t bias_offset = 0, num_bias = 0;
  int32_t stop_offset = 0, num_stop = 0;  // stop token ids, banned before min_tokens
  int32_t min_tokens = 0;
  int32_t ignore_eos = 0;
  int32_t num_logprobs = 0;
};

// What comes back from the device per sampled sequence.
struct device_sample_out {
  int32_t token = -1;
  float logprob = 0.0f;
  int32_t num_top = 0;
  int32_t top_tokens[max_device_logprobs];
  float top_logprobs[max_device_logprobs];
};

struct device_plan {
  std::vector<int32_t> tokens;       // per row
  std::vector<int32_t> positions;    // per row
  std::vector<int32_t> row_table;    // per row: offset of its sequence's table in block_tables
  std::vector<int32_t> block_tables; // concatenated, each cut to the blocks the step touches
  std::vector<int32_t> logit_rows;   // rows whose logits are computed, in output order
  std::vector<device_sample> samples;
  std::vector<int32_t> penalty_tokens;
  std::vector<int32_t> bias_tokens;
  std::vector<float> bias_values;
  std::vector<int32_t> stop_tokens;  // only of sequences still short of min_tokens

  int64_t num_rows() const { return (int64_t)tokens.size(); }
};

// Throws troupe::error for what the CPU backend rejects (duplicate sequence, empty feed,
// token outside the vocabulary, positions past the context, short table, block out of
// range, bad sampling parameters) and for penalty or bias tokens outside the vocabulary.
device_plan flatten_plan(const batch_plan& plan, const model_config& config, int32_t block_size,
                         int32_t num_blocks);

// Turns the device's per-sample records and the copied-back logits into the step_result,
// in plan order. all_logits holds logit_rows.size() x vocab floats (empty when no sequence
// asked for them).
step_result assemble_result(const batch_plan& plan, const device_plan& flat,
                            const std::vector<device_sample_out>& sampled, const std::vector<float>& all_logits,
                            int32_t vocab_size);

}  // namespace troupe::gpu
