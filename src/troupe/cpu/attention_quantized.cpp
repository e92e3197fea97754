// Paged attention over a q8_0 / q4_0 KV cache, reading the quantized blocks in place (no
// dequantized copy of the cache). Per work item: the query rows are quantized to Q8_0 and
// each score is integer dot products of 32-value blocks times the two block scales, as
// llama.cpp's flash attention does over a quantized cache; a softmax per row in fp32; then
// each value row is dequantized once into a head-sized buffer and weighs every row of the
// item. AVX2 (with FMA and F16C) or plain C++, chosen at run time.
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

// d * (32 products of int8 k and q summed in pairs, then in fours) added to acc. k is in
// [-127, 127] (both quantizers keep -128 out), so |k| fits vpmaddubsw's unsigned operand.
__attribute__((target("avx2,fma"))) inline __m256 add_block_dot(__m256i k, __m256i q, float d, __m256 acc) {
  const __m256i products = _mm256_maddubs_epi16(_mm256_sign_epi8(k, k), _mm256_sign_epi8(q, k));
  const __m256i sums = _mm256_madd_epi16(products, _mm256_set1_epi16(1));
  return _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sums), acc);
}

__attribute__((target("avx2,fma,f16c"))) float dot_q8_0_avx2(const block_q8_0* k, const block_q8_0* q, int32_t n) {
  __m256 acc = _mm256_setzero_ps();
  for (int32_t b = 0; b < n; ++b) {
    const __m256i kb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k[b].qs));
    const __m256i qb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q[b].qs));
    acc = add_block_dot(kb, qb, _cvtsh_ss(k[b].d) * _cvtsh_ss(q[b].d), acc);
  }
  return hsum(acc);
}

__attribute__((target("avx2,fma,f16c"))) float dot_q4_0_avx2(const block_q4_0* k, const block_q8_0* q, int32_t n) {
  __m256 acc = _mm256_setzero_ps();
  for (int32_t b = 0; b < n; ++b) {
    const __m256i qb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q[b].qs));
    acc = add_block_dot(unpack_q4_0(k[b]), qb, _cvtsh_ss(k[b].d) * _cvtsh_ss(q[b].d), acc);
  }
  return hsum(acc);
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

__attribute__((target("avx2,fma,f16c"))) void dequantize_avx2(kv_cache_dtype dtype, const uint8_t* row, int32_t n,
                                                              float* out) {
  for (int32_t b = 0; b < n; ++b) {
    if (dtype == kv_cache_dtype::q8_0) {
      const auto& blk = reinterpret_cast<const block_q8_0*>(row)[b];
      scale_block(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs)), _cvtsh_ss(blk.d), out + 32 * b);
    } else {
      const auto& blk = reinterpret_cast<const block_q4_0*>(row)[b];
      scale_block(unpack_q4_0(blk), _cvtsh_ss(blk.d), out + 32 * b);
    }
  }
}

// acc[0, n) += p * x[0, n), n % 32 == 0.
__attribute__((target("avx2,fma"))) void add_scaled_avx2(float p, const float* x, int32_t n, float* acc) {
  const __m256 pv = _mm256_set1_ps(p);
  for (int32_t i = 0; i < n; i += 8) {
    _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(pv, _mm256_loadu_ps(x + i), _mm256_loadu_ps(acc + i)));
  }
}

void add_scaled_portable(float p, const float* x, int32_t n, float* acc) {
  for (int32_t i = 0; i < n; ++i) acc[i] += p * x[i];
}

struct kernels {
  float (*dot_q8_0)(const block_q8_0*, const block_q8_0*, int32_t);
  float (*dot_q4_0)(const block_q4_0*, const block_q8_0*, int32_t);
  void (*dequantize)(kv_cache_dtype, const uint8_t*, int32_t, float*);
  void (*add_scaled)(float, const float*, int32_t, float*);
};

void dequantize_portable(kv_cache_dtype dtype, const uint8_t* row, int32_t n, float* out) {
  dequantize_kv_row(dtype, row, 32LL * n, out);
}

constexpr kernels portable_kernels{dot_q8_0_q8_0, dot_q4_0_q8_0, dequantize_portable, add_scaled_portable};
constexpr kernels avx2_kernels{dot_q8_0_avx2, dot_q4_0_avx2, dequantize_avx2, add_scaled_avx2};

void attend(const quantized_view& v, const kernels& k, const attention_sequence& s, const work_item& w,
            const float* q, float* out) {
  const int hd = v.head_dim;
  const int32_t nb = v.num_head_blocks;
  const int num_rows = (w.token_end - w.token_begin) * v.group;
  const int32_t num_keys = s.start_pos + w.token_end;
  const kv_cache_dtype dtype = v.kv->dtype();
  thread_local std::vector<block_q8_0> qq;
  thread_local std::vector<float> scores, acc, values;
  qq.resize((size_t)num_rows * nb);
  scores.resize((size_t)num_rows * num_keys);
  acc.assign((size_t)num_rows * hd, 0.0f);
  values.resize(hd);
  for (int r = 0; r < num_rows; ++r) quantize_q8_0(q + q_offset(v, s, w, r), hd, &qq[(size_t)r * nb]);
  auto last_key = [&](int r) { return s.start_pos + w.token_begin + r / v.group; };

  for (int32_t j = 0; j < num_keys; ++j) {
    const uint8_t* key = head_row(v, s, 0, w.kv_head, j);
    for (int r = 0; r < num_rows; ++r) {
      if (j > last_key(r)) continue;
      const block_q8_0* qr = &qq[(size_t)r * nb];
      const float dot = dtype == kv_cache_dtype::q8_0 ? k.dot_q8_0(reinterpret_cast<const block_q8_0*>(key), qr, nb)
                                                      : k.dot_q4_0(reinterpret_cast<const block_q4_0*>(key), qr, nb);
      scores[(size_t)r * num_keys + j] = dot * v.scale;
    }
  }
  for (int r = 0; r < num_rows; ++r) {
    const int32_t count = last_key(r) + 1;
    float* p = &scores[(size_t)r * num_keys];
    const float m = *std::max_element(p, p + count);
    double sum = 0.0;
    for (int32_t j = 0; j < count; ++j) sum += (p[j] = std::exp(p[j] - m));
    const float inv = (float)(1.0 / sum);
    for (int32_t j = 0; j < count; ++j) p[j] *= inv;
  }
  for (int32_t j = 0; j < num_keys; ++j) {
    k.dequantize(dtype, head_row(v, s, 1, w.kv_head, j), nb, values.data());
    for (int r = 0; r < num_rows; ++r) {
      if (j > last_key(r)) continue;
      k.add_scaled(scores[(size_t)r * num_keys + j], values.data(), hd, &acc[(size_t)r * hd]);
    }
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
  const kernels& k = kernel == attention_kernel::best && has_avx2() ? avx2_kernels : portable_kernels;
  std::atomic<size_t> next{0};
  const auto& work = items;
  pool.run([&](int, int) {
    for (size_t i = next.fetch_add(1); i < work.size(); i = next.fetch_add(1)) {
      attend(view, k, sequences[work[i].seq], work[i], q, out);
    }
  });
}

}  // namespace troupe::cpu
