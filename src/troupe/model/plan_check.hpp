// The checks every backend makes on a batch_plan before touching its KV memory, so that a
// malformed plan fails the same way (and leaves the cache alone) on the CPU and on a GPU.
#pragma once
#include <cstdint>

#include "troupe/model/backend.hpp"

namespace troupe {

// Throws troupe::error naming the sequence: invalid_argument for a sequence twice in the
// plan, no tokens, a token outside the vocabulary, a block table too short or with a block
// id outside [0, num_blocks), bad sampling parameters; context_overflow for positions past
// the context length.
void check_plan(const batch_plan& plan, const model_config& config, int32_t block_size, int32_t num_blocks);

// The KV blocks that cover a sequence's positions [0, start_pos + tokens.size()).
inline int64_t num_blocks_needed(const sequence_step& s, int32_t block_size) {
  const int64_t end = static_cast<int64_t>(s.start_pos) + static_cast<int64_t>(s.tokens.size());
  return (end + block_size - 1) / block_size;
}

}  // namespace troupe
