// Causal attention over the paged KV cache for one layer of one step: every fed token of
// every sequence attends to the cached positions of its own sequence (through its block
// table) up to and including itself. Grouped-query: q head h reads kv head h / group.
#pragma once
#include <cstdint>
#include <span>

#include "troupe/cpu/kv_memory.hpp"
#include "troupe/cpu/thread_pool.hpp"
#include "troupe/model/model_config.hpp"

namespace troupe::cpu {

struct attention_sequence {
  int32_t first_row = 0;     // row of the sequence's first fed token in q / out
  int32_t num_tokens = 0;
  int32_t start_pos = 0;     // position of the first fed token
  const int32_t* block_table = nullptr;
};

// Which kernel: the fastest the CPU has, the AVX2 one (where the CPU has AVX2, FMA and F16C;
// else the plain one), or the plain C++ one (tests compare them).
enum class attention_kernel { best, avx2, portable };

// q: rows of q_dim floats (RoPE applied); out: rows of q_dim floats. K/V of the fed tokens
// must already be in kv.
void paged_attention(const kv_memory& kv, int32_t layer, const model_config& config,
                     std::span<const attention_sequence> sequences, const float* q, float* out,
                     thread_pool& pool, attention_kernel kernel = attention_kernel::best);

}  // namespace troupe::cpu
