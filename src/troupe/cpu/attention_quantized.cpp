// Paged attention over a q8_0 / q4_0 KV cache, reading the quantized blocks in place (no
// dequantized copy of the cache). Per work item: the query rows are quantized to Q8_0 and
// each score is integer dot products of 32-value blocks times the two block scales, as
// llama.cpp's flash attention does over a quantized cache; a softmax per row in fp32; then
// each value row is dequantized 32 values at a time, once, and weighs every row of the item
// that sees it. A key's preparation is likewise shared by all the rows it scores. AVX2
// (with FMA and F16C) or plain C++, chosen at run time.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "troupe/cpu/attention_work.hpp"
#include "troupe/cpu/kv_quant.hpp"

namespace troupe::cpu {

namespace {

struct quantized_view {
  const kv_memory* kv;
  int32_t layer;
  int32_t head_dim;
  int32_t num_head_blocks;  // head_dim / 32
  int32_t group;            // q heads per kv head
  int32_t q_dim;
  float scale;
};

// The head's K (kv = 0) or V (kv = 1) blocks at position pos.
inline const uint8_t* head_row(const quantized_view& v, const attention_sequence& s, int32_t kv, int32_t kv_head,
                               int32_t pos) {
  const int32_t bs = v.kv->block_size();
  const int64_t head_bytes = kv_row_bytes(v.kv->dtype(), v.head_dim);
  return v.kv->quantized_row(v.layer, kv, s.block_table[pos / bs], pos % bs) + kv_head * head_bytes;
}

// Query row r of the item: token r / group, q head kv_head * group + r % group.
inline int64_t q_offset(const quantized_view& v, const attention_sequence& s, const work_item& w, int r) {
  return (int64_t)(s.first_row + w.token_begin + r / v.group) * v.q_dim + (w.kv_head * v.group + r % v.group) * v.head_dim;
}

__attribute__((target("avx2,fma"))) inline float hsum(__m256 x) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The 32 values of a Q4_0 block as int8 in [-8, 7], in order.
__attribute__((target("avx2"))) inline __m256i unpack_q4_0(const block_q4_0& b) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs));
  const __m128i low = _mm_and_si128(bytes, _mm_set1_epi8(15));
  const __m128i high = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(15));
  return _mm256_sub_epi8(_mm256_set_m128i(high, low), _mm256_set1_epi8(8));
}

// 32 int8 values times d, into out[0, 32).
__attribute__((target("avx2,fma"))) inline void scale_block(__m256i values, float d, float* out) {
  const __m256 scale = _mm256_set1_ps(d);
  const __m128i halves[2] = {_mm256_castsi256_si128(values), _mm256_extracti128_si256(values, 1)};
  for (int h = 0; h < 2; ++h) {
    _mm256_storeu_ps(out + 16 * h, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(halves[h]))));
    _mm256_storeu_ps(out + 16 * h + 8,
                     _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(halves[h], 8)))));
  }
}

// Rows [r0, r1) of the item against key j: scores[r * stride + j] = scale * q_r . k.
// What depends on the key alone (its values, their magnitudes, its scales) is prepared once
// for all the rows.
__attribute__((target("avx2,fma,f16c"))) void score_key_avx2(kv_cache_dtype dtype, const uint8_t* key,
                                                             const block_q8_0* qq, int32_t nb, int r0, int r1,
                                                             float scale, float* scores, int32_t stride, int32_t j) {
  constexpr int32_t max_blocks = 16;  // head_dim <= 512
  __m256i values[max_blocks], magnitudes[max_blocks];
  float key_scales[max_blocks];
  for (int32_t b = 0; b < nb; ++b) {
    if (dtype == kv_cache_dtype::q8_0) {
      const auto& blk = reinterpret_cast<const block_q8_0*>(key)[b];
      values[b] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs));
      key_scales[b] = _cvtsh_ss(blk.d);
    } else {
      const auto& blk = reinterpret_cast<const block_q4_0*>(key)[b];
      values[b] = unpack_q4_0(blk);
      key_scales[b] = _cvtsh_ss(blk.d);
    }
    magnitudes[b] = _mm256_sign_epi8(values[b], values[b]);
  }
  const __m256i ones = _mm256_set1_epi16(1);
  for (int r = r0; r < r1; ++r) {
    const block_q8_0* qr = qq + (size_t)r * nb;
    __m256 acc = _mm256_setzero_ps();
    for (int32_t b = 0; b < nb; ++b) {
      // |k| * (q with k's sign) = k * q, with |k| <= 127 fitting vpmaddubsw's unsigned side.
      const __m256i signed_q =
          _mm256_sign_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qr[b].qs)), values[b]);
      const __m256i sums = _mm256_madd_epi16(_mm256_maddubs_epi16(magnitudes[b], signed_q), ones);
      acc = _mm256_fmadd_ps(_mm256_set1_ps(key_scales[b] * _cvtsh_ss(qr[b].d)), _mm256_cvtepi32_ps(sums), acc);
    }
    scores[(size_t)r * stride + j] = hsum(acc) * scale;
  }
}

// acc rows [r0, r1) += scores[r * stride + j] * value j, each 32 values dequantized once.
__attribute__((target("avx2,fma,f16c"))) void weigh_value_avx2(kv_cache_dtype dtype, const uint8_t* value,
                                                               int32_t nb, const float* scores, int32_t stride,
                                                               int32_t j, int r0, int r1, float* acc, int32_t hd) {
  for (int32_t b = 0; b < nb; ++b) {
    float block[32];
    if (dtype == kv_cache_dtype::q8_0) {
      const auto& blk = reinterpret_cast<const block_q8_0*>(value)[b];
      scale_block(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs)), _cvtsh_ss(blk.d), block);
    } else {
      const auto& blk = reinterpret_cast<const block_q4_0*>(value)[b];
      scale_block(unpack_q4_0(blk), _cvtsh_ss(blk.d), block);
    }
    __m256 v[4];
    for (int c = 0; c < 4; ++c) v[c] = _mm256_loadu_ps(block + 8 * c);
    for (int r = r0; r < r1; ++r) {
      const __m256 p = _mm256_set1_ps(scores[(size_t)r * stride + j]);
      float* a = acc + (size_t)r * hd + 32 * b;
      for (int c = 0; c < 4; ++c) _mm256_storeu_ps(a + 8 * c, _mm256_fmadd_ps(p, v[c], _mm256_loadu_ps(a + 8 * c)));
    }
  }
}

void score_key_portable(kv_cache_dtype dtype, const uint8_t* key, const block_q8_0* qq, int32_t nb, int r0, int r1,
                        float scale, float* scores, int32_t stride, int32_t j) {
  for (int r = r0; r < r1; ++r) {
    const block_q8_0* qr = qq + (size_t)r * nb;
    const float dot = dtype == kv_cache_dtype::q8_0 ? dot_q8_0_q8_0(reinterpret_cast<const block_q8_0*>(key), qr, nb)
                                                    : dot_q4_0_q8_0(reinterpret_cast<const block_q4_0*>(key), qr, nb);
    scores[(size_t)r * stride + j] = dot * scale;
  }
}

void weigh_value_portable(kv_cache_dtype dtype, const uint8_t* value, int32_t nb, const float* scores,
                          int32_t stride, int32_t j, int r0, int r1, float* acc, int32_t hd) {
  float values[512];
  dequantize_kv_row(dtype, value, 32LL * nb, values);
  for (int r = r0; r < r1; ++r) {
    const float p = scores[(size_t)r * stride + j];
    float* a = acc + (size_t)r * hd;
    for (int32_t d = 0; d < hd; ++d) a[d] += p * values[d];
  }
}

struct kernels {
  void (*score_key)(kv_cache_dtype, const uint8_t*, const block_q8_0*, int32_t, int, int, float, float*, int32_t,
                    int32_t);
  void (*weigh_value)(kv_cache_dtype, const uint8_t*, int32_t, const float*, int32_t, int32_t, int, int, float*,
                      int32_t);
};

constexpr kernels portable_kernels{score_key_portable, weigh_value_portable};
constexpr kernels avx2_kernels{score_key_avx2, weigh_value_avx2};

void attend(const quantized_view& v, const kernels& k, const attention_sequence& s, const work_item& w,
            const float* q, float* out) {
  const int hd = v.head_dim;
  const int32_t nb = v.num_head_blocks;
  const int num_rows = (w.token_end - w.token_begin) * v.group;
  const int32_t num_keys = s.start_pos + w.token_end;
  const kv_cache_dtype dtype = v.kv->dtype();
  thread_local std::vector<block_q8_0> qq;
  thread_local std::vector<float> scores, acc;
  qq.resize((size_t)num_rows * nb);
  scores.resize((size_t)num_rows * num_keys);
  acc.assign((size_t)num_rows * hd, 0.0f);
  for (int r = 0; r < num_rows; ++r) quantize_q8_0(q + q_offset(v, s, w, r), hd, &qq[(size_t)r * nb]);
  // Rows go token by token, so the rows that see key j (j <= the row's position) are a
  // suffix: from the first row of token j - start_pos - token_begin on.
  auto first_row = [&](int32_t j) { return std::max(0, (j - s.start_pos - w.token_begin) * v.group); };

  for (int32_t j = 0; j < num_keys; ++j) {
    k.score_key(dtype, head_row(v, s, 0, w.kv_head, j), qq.data(), nb, first_row(j), num_rows, v.scale,
                scores.data(), num_keys, j);
  }
  for (int r = 0; r < num_rows; ++r) {
    const int32_t count = s.start_pos + w.token_begin + r / v.group + 1;
    float* p = &scores[(size_t)r * num_keys];
    const float m = *std::max_element(p, p + count);
    double sum = 0.0;
    for (int32_t j = 0; j < count; ++j) sum += (p[j] = std::exp(p[j] - m));
    const float inv = (float)(1.0 / sum);
    for (int32_t j = 0; j < count; ++j) p[j] *= inv;
  }
  for (int32_t j = 0; j < num_keys; ++j) {
    k.weigh_value(dtype, head_row(v, s, 1, w.kv_head, j), nb, scores.data(), num_keys, j, first_row(j), num_rows,
                  acc.data(), hd);
  }
  for (int r = 0; r < num_rows; ++r) std::copy(&acc[(size_t)r * hd], &acc[(size_t)r * hd] + hd, out + q_offset(v, s, w, r));
}

bool has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return has;
}

}  // namespace

void paged_attention_quantized(const kv_memory& kv, int32_t layer, const model_config& config,
                               std::span<const attention_sequence> sequences, const float* q, float* out,
                               thread_pool& pool, attention_kernel kernel) {
  thread_local std::vector<work_item> items;
  make_work_items(sequences, config.num_kv_heads, items);
  const quantized_view view{&kv, layer, config.head_dim, config.head_dim / 32, config.num_heads / config.num_kv_heads,
                            config.q_dim(), 1.0f / std::sqrt((float)config.head_dim)};
  const kernels& k = kernel != attention_kernel::portable && has_avx2() ? avx2_kernels : portable_kernels;
  std::atomic<size_t> next{0};
  const auto& work = items;
  pool.run([&](int, int) {
    for (size_t i = next.fetch_add(1); i < work.size(); i = next.fetch_add(1)) {
      attend(view, k, sequences[work[i].seq], work[i], q, out);
    }
  });
}

}  // namespace troupe::cpu
