// check_plan: one pass over the plan's sequences, each failure naming its sequence.
#include "troupe/model/plan_check.hpp"

#include <string>
#include <unordered_set>

#include "troupe/model/error.hpp"

namespace troupe {

void check_plan(const batch_plan& plan, const model_config& config, int32_t block_size, int32_t num_blocks) {
  std::unordered_set<uint64_t> seen;
  for (const auto& s : plan.sequences) {
    const std::string who = "sequence " + std::to_string(s.seq_id) + ": ";
    if (!seen.insert(s.seq_id).second) throw error(error_code::bad_plan, who + "appears twice in the plan");
    if (s.tokens.empty()) throw error(error_code::bad_plan, who + "no tokens to feed");
    for (int32_t t : s.tokens) {
      if (t < 0 || t >= config.vocab_size) {
        throw error(error_code::bad_plan, who + "token id " + std::to_string(t) + " is outside the vocabulary");
      }
    }
    const int64_t end = static_cast<int64_t>(s.start_pos) + static_cast<int64_t>(s.tokens.size());
    if (s.start_pos < 0 || end > config.context_length) {
      throw error(error_code::context_overflow, who + "positions [" + std::to_string(s.start_pos) + ", " +
                                                    std::to_string(end) + ") exceed the context length " +
                                                    std::to_string(config.context_length));
    }
    const int64_t blocks_needed = num_blocks_needed(s, block_size);
    if (static_cast<int64_t>(s.block_table.size()) < blocks_needed) {
      throw error(error_code::bad_plan, who + "block table covers " + std::to_string(s.block_table.size()) +
                                                    " blocks, needs " + std::to_string(blocks_needed));
    }
    for (int64_t b = 0; b < blocks_needed; ++b) {
      if (s.block_table[b] < 0 || s.block_table[b] >= num_blocks) {
        throw error(error_code::bad_plan, who + "block id " + std::to_string(s.block_table[b]) + " out of range");
      }
    }
    if (s.num_draft_tokens < 0 || s.num_draft_tokens >= static_cast<int32_t>(s.tokens.size())) {
      throw error(error_code::bad_plan, who + "num_draft_tokens " + std::to_string(s.num_draft_tokens) +
                                            " must be in [0, " + std::to_string(s.tokens.size()) + ")");
    }
    if (s.num_draft_tokens > 0 && !s.wants_sample) {
      throw error(error_code::bad_plan, who + "proposed tokens need a sample to verify them (wants_sample)");
    }
    if (s.wants_sample) s.params.validate(config.vocab_size);
  }
}

}  // namespace troupe
