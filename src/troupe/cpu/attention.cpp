// Paged attention on the CPU: work items of (sequence, kv head, up to 16 query tokens)
// handed out dynamically. Each item makes two passes over its keys: scores for every query
// row of the item (all q heads of the group), a softmax per row, then the values weighted.
// The fast path takes scores 16 keys at a time from the dimension-major key blocks (one
// load per dimension, no horizontal sums) for a group of rows held in registers, and
// weights the values for a group of rows at once, so each key and value it converts from
// fp16 serves several rows.
#include "troupe/cpu/attention.hpp"
#include "troupe/cpu/attention_work.hpp"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "troupe/model/quant.hpp"

namespace troupe::cpu {

namespace {

constexpr int tile_keys = 16;

struct layer_view {
  const kv_memory* kv;
  int32_t layer;
  int32_t head_dim;
  int32_t group;       // q heads per kv head
  int32_t q_dim;
  float scale;
};

// Dimension d of kv head h's key at position pos.
inline float key_at(const layer_view& v, const attention_sequence& s, int32_t kv_head, int32_t pos, int32_t d) {
  const int32_t bs = v.kv->block_size();
  return fp16_to_fp32(v.kv->key_at(v.layer, s.block_table[pos / bs], pos % bs, kv_head * v.head_dim + d));
}

inline const uint16_t* value_row(const layer_view& v, const attention_sequence& s, int32_t kv_head, int32_t pos) {
  const int32_t bs = v.kv->block_size();
  return v.kv->value(v.layer, s.block_table[pos / bs], pos % bs) + kv_head * v.head_dim;
}

// Query row r of the item: token r / group, q head kv_head * group + r % group.
inline int64_t q_offset(const layer_view& v, const attention_sequence& s, const work_item& w, int r) {
  return (int64_t)(s.first_row + w.token_begin + r / v.group) * v.q_dim + (w.kv_head * v.group + r % v.group) * v.head_dim;
}

// Scores of every (row, key) pair, then a softmax per row normalised before it weights the
// values, with q and the probabilities rounded to fp16 on the way: the same roundings as
// llama.cpp's attention over an fp16 KV cache, so both agree to the last bits that matter.
void attend_portable(const layer_view& v, const attention_sequence& s, const work_item& w, const float* q,
                     float* out) {
  const int hd = v.head_dim;
  const int num_rows = (w.token_end - w.token_begin) * v.group;
  const int32_t num_keys = s.start_pos + w.token_end;
  std::vector<float> acc((size_t)num_rows * hd, 0.0f), qh((size_t)num_rows * hd), key(hd);
  std::vector<float> probs((size_t)num_rows * num_keys, 0.0f);
  for (int r = 0; r < num_rows; ++r) {
    const float* qr = q + q_offset(v, s, w, r);
    for (int d = 0; d < hd; ++d) qh[(size_t)r * hd + d] = fp16_to_fp32(fp32_to_fp16(qr[d]));
  }
  for (int32_t j = 0; j < num_keys; ++j) {
    for (int d = 0; d < hd; ++d) key[d] = key_at(v, s, w.kv_head, j, d);
    for (int r = 0; r < num_rows; ++r) {
      const int32_t qpos = s.start_pos + w.token_begin + r / v.group;
      if (j > qpos) continue;
      float dot = 0.0f;
      for (int d = 0; d < hd; ++d) dot += qh[(size_t)r * hd + d] * key[d];
      probs[(size_t)r * num_keys + j] = dot * v.scale;
    }
  }
  for (int r = 0; r < num_rows; ++r) {
    const int32_t count = s.start_pos + w.token_begin + r / v.group + 1;
    float* p = &probs[(size_t)r * num_keys];
    const float m = *std::max_element(p, p + count);
    double sum = 0.0;
    for (int32_t j = 0; j < count; ++j) sum += (p[j] = std::exp(p[j] - m));
    const float inv = (float)(1.0 / sum);
    for (int32_t j = 0; j < count; ++j) p[j] = fp16_to_fp32(fp32_to_fp16(p[j] * inv));
  }
  for (int32_t j = 0; j < num_keys; ++j) {
    const uint16_t* vr = value_row(v, s, w.kv_head, j);
    for (int r = 0; r < num_rows; ++r) {
      const float p = probs[(size_t)r * num_keys + j];
      if (p == 0.0f) continue;
      float* a = &acc[(size_t)r * hd];
      for (int d = 0; d < hd; ++d) a[d] += p * fp16_to_fp32(vr[d]);
    }
  }
  for (int r = 0; r < num_rows; ++r) std::copy(&acc[(size_t)r * hd], &acc[(size_t)r * hd] + hd, out + q_offset(v, s, w, r));
}

// An item's working buffers, one set per thread: a key tile as fp32, the rows' output sums,
// q rounded to fp16, and the probabilities (rows of `stride`).
struct item_buffers {
  std::vector<float> kt, acc, qh, probs;
};

item_buffers& buffers_for(const layer_view& v, int num_rows, int32_t stride) {
  thread_local item_buffers b;
  b.kt.resize((size_t)tile_keys * v.head_dim);
  b.acc.resize((size_t)num_rows * v.head_dim);
  b.qh.resize((size_t)num_rows * v.head_dim);
  b.probs.resize((size_t)num_rows * stride);
  return b;
}

// Keys [j0, j0 + 16) of the item's kv head where they lie whole in one block (read in place,
// dimension d at + d * block_size); null for a tile to gather.
const uint16_t* keys_in_place(const layer_view& v, const attention_sequence& s, const work_item& w, int32_t j0, int n) {
  const int32_t bs = v.kv->block_size();
  if (n != tile_keys || j0 % bs + tile_keys > bs) return nullptr;
  return v.kv->key_block(v.layer, s.block_table[j0 / bs]) + (int64_t)w.kv_head * v.head_dim * bs + j0 % bs;
}

void copy_rows_out(const layer_view& v, const attention_sequence& s, const work_item& w, const float* acc, int num_rows,
                   float* out) {
  for (int r = 0; r < num_rows; ++r) {
    std::copy(acc + (size_t)r * v.head_dim, acc + (size_t)(r + 1) * v.head_dim, out + q_offset(v, s, w, r));
  }
}

// exp(x) for 16 lanes: x = n·ln2 + r, |r| <= ln2/2, degree-6 polynomial, scaled by 2^n.
__attribute__((target("avx512f"))) inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

inline __mmask16 first_lanes(int n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << std::max(n, 0)) - 1u); }

// Keys [j0, j0 + n) of one kv head as fp32, dimension-major: kt[d * 16 + i] is dimension d
// of key j0 + i. A tile crosses blocks when blocks are shorter than 16 positions.
__attribute__((target("avx512f,avx512bw,avx512vl,f16c"))) void load_key_tile(const layer_view& v, const attention_sequence& s,
                                                            int32_t kv_head, int32_t j0, int n, float* kt) {
  const int32_t bs = v.kv->block_size();
  for (int i = 0; i < n;) {
    const int32_t pos = j0 + i;
    const int32_t off = pos % bs;
    const int len = std::min<int>(n - i, bs - off);
    const uint16_t* kb = v.kv->key_block(v.layer, s.block_table[pos / bs]) + (int64_t)kv_head * v.head_dim * bs + off;
    const __mmask16 m = first_lanes(len);
    for (int d = 0; d < v.head_dim; ++d) {
      const __m256i h = _mm256_maskz_loadu_epi16(m, kb + (int64_t)d * bs);
      _mm512_mask_storeu_ps(kt + d * tile_keys + i, m, _mm512_cvtph_ps(h));
    }
    i += len;
  }
}

// Scores of rows [r0, r0 + G) against the 16 keys of kt (n of them real), scaled, into
// probs; keys past a row's own position, and past n, get 0.
// kh, when not null: the 16 keys straight from their block (dimension d at kh + d * kh_stride),
// for a tile that lies whole in one block; else kt.
template <int G>
__attribute__((target("avx512f,f16c"))) void score_rows(const layer_view& v, const attention_sequence& s,
                                                        const work_item& w, const float* qh, const float* kt,
                                                        const uint16_t* kh, int32_t kh_stride, int32_t j0, int n,
                                                        int r0, float* probs, int32_t stride) {
  const int hd = v.head_dim;
  __m512 acc[G];
  for (int g = 0; g < G; ++g) acc[g] = _mm512_setzero_ps();
  for (int d = 0; d < hd; ++d) {
    const __m512 k = kh ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(kh + (int64_t)d * kh_stride)))
                        : _mm512_loadu_ps(kt + d * tile_keys);
    for (int g = 0; g < G; ++g) acc[g] = _mm512_fmadd_ps(_mm512_set1_ps(qh[(size_t)(r0 + g) * hd + d]), k, acc[g]);
  }
  const __m512 scale = _mm512_set1_ps(v.scale);
  for (int g = 0; g < G; ++g) {
    const int32_t qpos = s.start_pos + w.token_begin + (r0 + g) / v.group;
    const __mmask16 m = first_lanes(std::min<int32_t>(n, qpos - j0 + 1));
    _mm512_storeu_ps(probs + (size_t)(r0 + g) * stride + j0, _mm512_maskz_mul_ps(m, acc[g], scale));
  }
}

// acc rows [r0, r0 + G) += probs · values over keys [0, num_keys), head_dim % 16 == 0 and
// head_dim <= 256 (up to 16 lanes-chunks; rows of G at most 24 / chunks accumulators).
template <int G, int C>
__attribute__((target("avx512f,f16c"))) void weigh_rows(const layer_view& v, const attention_sequence& s,
                                                        const work_item& w, const float* probs, int32_t stride,
                                                        int32_t num_keys, int r0, int d0, float* acc) {
  const int hd = v.head_dim;
  __m512 a[G][C];
  for (int g = 0; g < G; ++g) {
    for (int c = 0; c < C; ++c) a[g][c] = _mm512_setzero_ps();
  }
  for (int32_t j = 0; j < num_keys; ++j) {
    const uint16_t* vr = value_row(v, s, w.kv_head, j) + d0;
    __m512 vals[C];
    for (int c = 0; c < C; ++c) vals[c] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(vr + 16 * c)));
    for (int g = 0; g < G; ++g) {
      const __m512 p = _mm512_set1_ps(probs[(size_t)(r0 + g) * stride + j]);
      for (int c = 0; c < C; ++c) a[g][c] = _mm512_fmadd_ps(p, vals[c], a[g][c]);
    }
  }
  for (int g = 0; g < G; ++g) {
    for (int c = 0; c < C; ++c) _mm512_storeu_ps(acc + (size_t)(r0 + g) * hd + d0 + 16 * c, a[g][c]);
  }
}

template <int G>
void weigh_rows_chunks(const layer_view& v, const attention_sequence& s, const work_item& w, const float* probs,
                       int32_t stride, int32_t num_keys, int r0, float* acc) {
  // Four 16-lane chunks of head_dim per pass (three rows of G at most: 24 accumulators).
  for (int d0 = 0; d0 < v.head_dim; d0 += 64) {
    switch (std::min(4, (v.head_dim - d0) / 16)) {
      case 4: weigh_rows<G, 4>(v, s, w, probs, stride, num_keys, r0, d0, acc); break;
      case 3: weigh_rows<G, 3>(v, s, w, probs, stride, num_keys, r0, d0, acc); break;
      case 2: weigh_rows<G, 2>(v, s, w, probs, stride, num_keys, r0, d0, acc); break;
      default: weigh_rows<G, 1>(v, s, w, probs, stride, num_keys, r0, d0, acc); break;
    }
  }
}

// head_dim % 16 == 0. The same two passes and roundings as attend_portable.
__attribute__((target("avx512f,f16c"))) void attend_avx512(const layer_view& v, const attention_sequence& s,
                                                            const work_item& w, const float* q, float* out) {
  const int hd = v.head_dim;
  const int num_rows = (w.token_end - w.token_begin) * v.group;
  const int32_t num_keys = s.start_pos + w.token_end;
  const int32_t stride = (num_keys + 15) & ~15;
  auto& [kt, acc, qh, probs] = buffers_for(v, num_rows, stride);
  for (int r = 0; r < num_rows; ++r) {
    const float* qr = q + q_offset(v, s, w, r);
    for (int d = 0; d < hd; d += 16) {
      const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(qr + d), _MM_FROUND_TO_NEAREST_INT);
      _mm512_storeu_ps(&qh[(size_t)r * hd + d], _mm512_cvtph_ps(h));
    }
  }
  for (int32_t j0 = 0; j0 < stride; j0 += tile_keys) {
    const int n = std::min<int32_t>(tile_keys, num_keys - j0);
    // A whole tile inside one block is read in place; else it is gathered and converted.
    const int32_t bs = v.kv->block_size();
    const uint16_t* kh = keys_in_place(v, s, w, j0, n);
    if (!kh) load_key_tile(v, s, w.kv_head, j0, n, kt.data());
    int r = 0;
    for (; r + 8 <= num_rows; r += 8) score_rows<8>(v, s, w, qh.data(), kt.data(), kh, bs, j0, n, r, probs.data(), stride);
    switch (num_rows - r) {
      case 7: score_rows<7>(v, s, w, qh.data(), kt.data(), kh, bs, j0, n, r, probs.data(), stride); break;
      case 6: score_rows<6>(v, s, w, qh.data(), kt.data(), kh, bs, j0, n, r, probs.data(), stride); break;
      case 5: score_rows<5>(v, s, w, qh.data(), kt.data(), kh, bs, j0, n, r, probs.data(), stride); break;
      case 4: score_rows<4>(v, s, w, qh.data(), kt.data(), kh, bs, j0, n, r, probs.data(), stride); break;
      case 3: score_rows<3>(v, s, w, qh.data(), kt.data(), kh, bs, j0, n, r, probs.data(), stride); break;
      case 2: score_rows<2>(v, s, w, qh.data(), kt.data(), kh, bs, j0, n, r, probs.data(), stride); break;
      case 1: score_rows<1>(v, s, w, qh.data(), kt.data(), kh, bs, j0, n, r, probs.data(), stride); break;
      default: break;
    }
  }
  for (int r = 0; r < num_rows; ++r) {
    const int32_t count = s.start_pos + w.token_begin + r / v.group + 1;
    float* p = &probs[(size_t)r * stride];
    __m512 mv = _mm512_set1_ps(-INFINITY);
    for (int32_t j = 0; j < count; j += 16) {
      mv = _mm512_max_ps(mv, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), first_lanes(count - j), p + j));
    }
    const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
    double sum = 0.0;
    for (int32_t j = 0; j < count; j += 16) {
      const __m512 e = _mm512_maskz_mov_ps(first_lanes(count - j), exp512(_mm512_sub_ps(_mm512_loadu_ps(p + j), m)));
      _mm512_storeu_ps(p + j, e);
      sum += (double)_mm512_reduce_add_ps(e);
    }
    const __m512 inv = _mm512_set1_ps((float)(1.0 / sum));
    for (int32_t j = 0; j < count; j += 16) {
      const __m256i h = _mm512_cvtps_ph(_mm512_mul_ps(_mm512_loadu_ps(p + j), inv), _MM_FROUND_TO_NEAREST_INT);
      _mm512_storeu_ps(p + j, _mm512_cvtph_ps(h));
    }
  }
  // Rows of one token share their keys; a group of rows weighs keys up to its last row's.
  int r = 0;
  for (; r + 6 <= num_rows; r += 6) {
    const int32_t keys = s.start_pos + w.token_begin + (r + 5) / v.group + 1;
    if (hd <= 64) {
      weigh_rows_chunks<6>(v, s, w, probs.data(), stride, keys, r, acc.data());
    } else {
      weigh_rows_chunks<3>(v, s, w, probs.data(), stride, keys, r, acc.data());
      weigh_rows_chunks<3>(v, s, w, probs.data(), stride, keys, r + 3, acc.data());
    }
  }
  for (; r < num_rows; ++r) {
    const int32_t keys = s.start_pos + w.token_begin + r / v.group + 1;
    weigh_rows_chunks<1>(v, s, w, probs.data(), stride, keys, r, acc.data());
  }
  copy_rows_out(v, s, w, acc.data(), num_rows, out);
}

// The AVX2 kernel (FMA, F16C): the same two passes, tiles and roundings as attend_avx512,
// each 16-key tile as two 8-lane halves; lanes a row may not see are zeroed after the store
// (no mask registers).
#define TROUPE_AVX2 __attribute__((target("avx2,fma,f16c")))

// exp(x) for 8 lanes, as exp512: x = n·ln2 + r, degree-6 polynomial, scaled by 2^n.
TROUPE_AVX2 inline __m256 exp256(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 720.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  // 2^n for n in [-126, 127] (x >= -87 keeps n >= -126).
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

TROUPE_AVX2 inline float hmax256(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

TROUPE_AVX2 inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

TROUPE_AVX2 inline __m256 load_f16x8_ps(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Keys [j0, j0 + n) of one kv head as fp32, dimension-major (as load_key_tile); lanes past n
// are zero.
void load_key_tile_scalar(const layer_view& v, const attention_sequence& s, int32_t kv_head, int32_t j0, int n,
                          float* kt) {
  std::fill(kt, kt + (size_t)tile_keys * v.head_dim, 0.0f);
  for (int i = 0; i < n; ++i) {
    for (int d = 0; d < v.head_dim; ++d) kt[d * tile_keys + i] = key_at(v, s, kv_head, j0 + i, d);
  }
}

template <int G>
TROUPE_AVX2 void score_rows_avx2(const layer_view& v, const attention_sequence& s, const work_item& w,
                                 const float* qh, const float* kt, const uint16_t* kh, int32_t kh_stride, int32_t j0,
                                 int n, int r0, float* probs, int32_t stride) {
  const int hd = v.head_dim;
  __m256 acc[G][2];
  for (int g = 0; g < G; ++g) acc[g][0] = acc[g][1] = _mm256_setzero_ps();
  for (int d = 0; d < hd; ++d) {
    __m256 k0, k1;
    if (kh) {
      k0 = load_f16x8_ps(kh + (int64_t)d * kh_stride);
      k1 = load_f16x8_ps(kh + (int64_t)d * kh_stride + 8);
    } else {
      k0 = _mm256_loadu_ps(kt + d * tile_keys);
      k1 = _mm256_loadu_ps(kt + d * tile_keys + 8);
    }
    for (int g = 0; g < G; ++g) {
      const __m256 q = _mm256_broadcast_ss(&qh[(size_t)(r0 + g) * hd + d]);
      acc[g][0] = _mm256_fmadd_ps(q, k0, acc[g][0]);
      acc[g][1] = _mm256_fmadd_ps(q, k1, acc[g][1]);
    }
  }
  const __m256 scale = _mm256_set1_ps(v.scale);
  for (int g = 0; g < G; ++g) {
    const int32_t qpos = s.start_pos + w.token_begin + (r0 + g) / v.group;
    const int visible = std::clamp<int32_t>(std::min<int32_t>(n, qpos - j0 + 1), 0, tile_keys);
    float* p = probs + (size_t)(r0 + g) * stride + j0;
    _mm256_storeu_ps(p, _mm256_mul_ps(acc[g][0], scale));
    _mm256_storeu_ps(p + 8, _mm256_mul_ps(acc[g][1], scale));
    std::fill(p + visible, p + tile_keys, 0.0f);
  }
}

// acc rows [r0, r0 + G) += probs · values over keys [0, num_keys), dimensions [d0, d0 + 8C).
template <int G, int C>
TROUPE_AVX2 void weigh_rows_avx2(const layer_view& v, const attention_sequence& s, const work_item& w,
                                 const float* probs, int32_t stride, int32_t num_keys, int r0, int d0, float* acc) {
  const int hd = v.head_dim;
  __m256 a[G][C];
  for (int g = 0; g < G; ++g) {
    for (int c = 0; c < C; ++c) a[g][c] = _mm256_setzero_ps();
  }
  for (int32_t j = 0; j < num_keys; ++j) {
    const uint16_t* vr = value_row(v, s, w.kv_head, j) + d0;
    __m256 vals[C];
    for (int c = 0; c < C; ++c) vals[c] = load_f16x8_ps(vr + 8 * c);
    for (int g = 0; g < G; ++g) {
      const __m256 p = _mm256_broadcast_ss(&probs[(size_t)(r0 + g) * stride + j]);
      for (int c = 0; c < C; ++c) a[g][c] = _mm256_fmadd_ps(p, vals[c], a[g][c]);
    }
  }
  for (int g = 0; g < G; ++g) {
    for (int c = 0; c < C; ++c) _mm256_storeu_ps(acc + (size_t)(r0 + g) * hd + d0 + 8 * c, a[g][c]);
  }
}

template <int G>
void weigh_rows_chunks_avx2(const layer_view& v, const attention_sequence& s, const work_item& w, const float* probs,
                            int32_t stride, int32_t num_keys, int r0, float* acc) {
  // Up to 16 accumulators: G rows of 8 / G lane-chunks (G = 4: two chunks; G = 1: eight).
  constexpr int C = G >= 4 ? 2 : G >= 2 ? 4 : 8;
  for (int d0 = 0; d0 < v.head_dim; d0 += 8 * C) {
    switch (std::min(C, (v.head_dim - d0) / 8)) {
      case 8: weigh_rows_avx2<G, 8 < C ? 8 : C>(v, s, w, probs, stride, num_keys, r0, d0, acc); break;
      case 4: weigh_rows_avx2<G, 4 < C ? 4 : C>(v, s, w, probs, stride, num_keys, r0, d0, acc); break;
      case 3: weigh_rows_avx2<G, 3 < C ? 3 : C>(v, s, w, probs, stride, num_keys, r0, d0, acc); break;
      case 2: weigh_rows_avx2<G, 2 < C ? 2 : C>(v, s, w, probs, stride, num_keys, r0, d0, acc); break;
      default:
        for (int c = 0; c < (v.head_dim - d0) / 8; ++c) {
          weigh_rows_avx2<G, 1>(v, s, w, probs, stride, num_keys, r0, d0 + 8 * c, acc);
        }
        break;
    }
  }
}

// head_dim % 8 == 0.
TROUPE_AVX2 void attend_avx2(const layer_view& v, const attention_sequence& s, const work_item& w, const float* q,
                             float* out) {
  const int hd = v.head_dim;
  const int num_rows = (w.token_end - w.token_begin) * v.group;
  const int32_t num_keys = s.start_pos + w.token_end;
  const int32_t stride = (num_keys + 15) & ~15;
  auto& [kt, acc, qh, probs] = buffers_for(v, num_rows, stride);
  for (int r = 0; r < num_rows; ++r) {
    const float* qr = q + q_offset(v, s, w, r);
    for (int d = 0; d < hd; d += 8) {
      const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(qr + d), _MM_FROUND_TO_NEAREST_INT);
      _mm256_storeu_ps(&qh[(size_t)r * hd + d], _mm256_cvtph_ps(h));
    }
  }
  const int32_t bs = v.kv->block_size();
  for (int32_t j0 = 0; j0 < stride; j0 += tile_keys) {
    const int n = std::min<int32_t>(tile_keys, num_keys - j0);
    const uint16_t* kh = keys_in_place(v, s, w, j0, n);
    if (!kh) load_key_tile_scalar(v, s, w.kv_head, j0, n, kt.data());
    int r = 0;
    for (; r + 6 <= num_rows; r += 6) {
      score_rows_avx2<6>(v, s, w, qh.data(), kt.data(), kh, bs, j0, n, r, probs.data(), stride);
    }
    switch (num_rows - r) {
      case 5: score_rows_avx2<5>(v, s, w, qh.data(), kt.data(), kh, bs, j0, n, r, probs.data(), stride); break;
      case 4: score_rows_avx2<4>(v, s, w, qh.data(), kt.data(), kh, bs, j0, n, r, probs.data(), stride); break;
      case 3: score_rows_avx2<3>(v, s, w, qh.data(), kt.data(), kh, bs, j0, n, r, probs.data(), stride); break;
      case 2: score_rows_avx2<2>(v, s, w, qh.data(), kt.data(), kh, bs, j0, n, r, probs.data(), stride); break;
      case 1: score_rows_avx2<1>(v, s, w, qh.data(), kt.data(), kh, bs, j0, n, r, probs.data(), stride); break;
      default: break;
    }
  }
  for (int r = 0; r < num_rows; ++r) {
    const int32_t count = s.start_pos + w.token_begin + r / v.group + 1;
    const int32_t whole = count & ~7;
    float* p = &probs[(size_t)r * stride];
    __m256 mv = _mm256_set1_ps(-INFINITY);
    for (int32_t j = 0; j < whole; j += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(p + j));
    float mx = hmax256(mv);
    for (int32_t j = whole; j < count; ++j) mx = std::max(mx, p[j]);
    const __m256 m = _mm256_set1_ps(mx);
    double sum = 0.0;
    for (int32_t j = 0; j < count; j += 8) {
      // The last chunk's lanes past count hold zeros (or a later row's keys) and are
      // zeroed again after it: they must not count.
      __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(p + j), m));
      if (j + 8 > count) {
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, e);
        std::fill(lanes + (count - j), lanes + 8, 0.0f);
        e = _mm256_load_ps(lanes);
      }
      _mm256_storeu_ps(p + j, e);
      sum += (double)hsum256(e);
    }
    const __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
    for (int32_t j = 0; j < count; j += 8) {
      const __m128i h = _mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(p + j), inv), _MM_FROUND_TO_NEAREST_INT);
      _mm256_storeu_ps(p + j, _mm256_cvtph_ps(h));
    }
  }
  int r = 0;
  for (; r + 4 <= num_rows; r += 4) {
    const int32_t keys = s.start_pos + w.token_begin + (r + 3) / v.group + 1;
    weigh_rows_chunks_avx2<4>(v, s, w, probs.data(), stride, keys, r, acc.data());
  }
  for (; r < num_rows; ++r) {
    const int32_t keys = s.start_pos + w.token_begin + r / v.group + 1;
    weigh_rows_chunks_avx2<1>(v, s, w, probs.data(), stride, keys, r, acc.data());
  }
  copy_rows_out(v, s, w, acc.data(), num_rows, out);
}

bool use_avx2(int32_t head_dim) {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return has && head_dim % 8 == 0;
}

bool use_avx512(int32_t head_dim) {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("f16c");
  return has && head_dim % 16 == 0;
}

}  // namespace

void paged_attention(const kv_memory& kv, int32_t layer, const model_config& config,
                     std::span<const attention_sequence> sequences, const float* q, float* out,
                     thread_pool& pool, attention_kernel kernel) {
  if (kv.dtype() != kv_cache_dtype::f16) {
    paged_attention_quantized(kv, layer, config, sequences, q, out, pool, kernel);
    return;
  }
  thread_local std::vector<work_item> items;
  make_work_items(sequences, config.num_kv_heads, items);
  const layer_view view{&kv, layer, config.head_dim, config.num_heads / config.num_kv_heads, config.q_dim(),
                        1.0f / std::sqrt((float)config.head_dim)};
  const bool avx512 = kernel == attention_kernel::best && use_avx512(config.head_dim);
  const bool avx2 = !avx512 && kernel != attention_kernel::portable && use_avx2(config.head_dim);
  std::atomic<size_t> next{0};
  const auto& work = items;
  pool.run([&](int, int) {
    for (size_t i = next.fetch_add(1); i < work.size(); i = next.fetch_add(1)) {
      const auto& w = work[i];
      if (avx512) {
        attend_avx512(view, sequences[w.seq], w, q, out);
      } else if (avx2) {
        attend_avx2(view, sequences[w.seq], w, q, out);
      } else {
        attend_portable(view, sequences[w.seq], w, q, out);
      }
    }
  });
}

}  // namespace troupe::cpu
