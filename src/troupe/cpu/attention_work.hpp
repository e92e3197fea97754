// How paged attention splits one layer's work for the thread pool, shared by the fp16
// kernels (attention.cpp) and the quantized ones (attention_quantized.cpp).
#pragma once
#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "troupe/cpu/attention.hpp"

namespace troupe::cpu {

constexpr int attention_tokens_per_item = 16;

// (sequence, kv head, up to 16 query tokens): the unit handed out dynamically.
struct work_item {
  int32_t seq;
  int32_t kv_head;
  int32_t token_begin;
  int32_t token_end;
};

// Every item of the step, longest first, so the dynamic hand-out ends evenly.
inline void make_work_items(std::span<const attention_sequence> sequences, int32_t num_kv_heads,
                            std::vector<work_item>& items) {
  items.clear();
  for (int32_t s = 0; s < (int32_t)sequences.size(); ++s) {
    for (int32_t h = 0; h < num_kv_heads; ++h) {
      for (int32_t t = 0; t < sequences[s].num_tokens; t += attention_tokens_per_item) {
        items.push_back({s, h, t, std::min(sequences[s].num_tokens, t + attention_tokens_per_item)});
      }
    }
  }
  std::sort(items.begin(), items.end(), [&](const work_item& a, const work_item& b) {
    return sequences[a.seq].start_pos + a.token_end > sequences[b.seq].start_pos + b.token_end;
  });
}

// q8_0 / q4_0 caches (kv.dtype() != f16): the same contract as paged_attention.
void paged_attention_quantized(const kv_memory& kv, int32_t layer, const model_config& config,
                               std::span<const attention_sequence> sequences, const float* q, float* out,
                               thread_pool& pool, attention_kernel kernel);

}  // namespace troupe::cpu
