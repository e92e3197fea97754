// The per-element math of paged attention, shared by the CUDA kernel and its CPU test: a
// partial q·k, the online-softmax update of one key's value into an accumulator, the merge
// of two partial states, and one whole attention row computed serially from those pieces.
// The kernel runs the same pieces with each lane owning a slice of head_dim and each warp a
// stride of the keys, then merges the warps' states.
#pragma once
#include <cstdint>

#include "troupe/gpu/math/kv_layout.hpp"
#include "troupe/model/hd.hpp"
#include "troupe/model/ops_math.hpp"
#include "troupe/model/quant.hpp"

namespace troupe::gpu {

// q is rounded to fp16 before the dot products, as the CPU backend (and llama.cpp over an
// fp16 KV cache) does.
TROUPE_HD float round_to_fp16(float x) { return fp16_to_fp32(fp32_to_fp16(x)); }

// sum over n dims of q[d] * k[d] (k in fp16).
TROUPE_HD float attention_dot(const float* q, const uint16_t* k, int n) {
  float dot = 0.0f;
  for (int d = 0; d < n; ++d) dot += q[d] * fp16_to_fp32(k[d]);
  return dot;
}

// Folds one key's score and value (n dims of it) into the running state and accumulator.
TROUPE_HD void attention_push(online_softmax& s, float score, const uint16_t* v, float* acc, int n) {
  float p;
  const float rescale = online_softmax_push(s, score, p);
  for (int d = 0; d < n; ++d) acc[d] = acc[d] * rescale + p * fp16_to_fp32(v[d]);
}

// Merges state b (with its accumulator) into a: the result is as if a's keys and b's keys
// had been pushed into one state.
TROUPE_HD void attention_merge(online_softmax& a, float* acc_a, const online_softmax& b, const float* acc_b, int n) {
  if (b.l == 0.0f) return;
  if (a.l == 0.0f) {
    a = b;
    for (int d = 0; d < n; ++d) acc_a[d] = acc_b[d];
    return;
  }
  const float m = a.m > b.m ? a.m : b.m;
  const float fa = expf(a.m - m), fb = expf(b.m - m);
  for (int d = 0; d < n; ++d) acc_a[d] = acc_a[d] * fa + acc_b[d] * fb;
  a.l = a.l * fa + b.l * fb;
  a.m = m;
}

// The attention output: the accumulator divided by the softmax denominator.
TROUPE_HD void attention_finish(const online_softmax& s, float* acc, int n) {
  const float inv = s.l > 0.0f ? 1.0f / s.l : 0.0f;
  for (int d = 0; d < n; ++d) acc[d] *= inv;
}

// One query row (head_dim values, RoPE applied) of kv head kv_head against positions
// [0, num_keys) of a sequence, read through its block table from a pool laid out as
// `layout`. out receives head_dim values. At most 256 dims (the kernel's limit too).
TROUPE_HD void attend_row(const float* q, int32_t head_dim, const uint16_t* pool, const kv_layout& layout,
                          int32_t layer, const int32_t* block_table, int32_t kv_head, int32_t num_keys, float scale,
                          float* out) {
  float qh[256];
  for (int d = 0; d < head_dim; ++d) qh[d] = round_to_fp16(q[d]);
  online_softmax s;
  for (int d = 0; d < head_dim; ++d) out[d] = 0.0f;
  for (int32_t j = 0; j < num_keys; ++j) {
    const uint16_t* k = pool + layout.index_at(block_table, layer, 0, j) + (int64_t)kv_head * head_dim;
    const uint16_t* v = pool + layout.index_at(block_table, layer, 1, j) + (int64_t)kv_head * head_dim;
    attention_push(s, attention_dot(qh, k, head_dim) * scale, v, out, head_dim);
  }
  attention_finish(s, out, head_dim);
}

}  // namespace troupe::gpu
