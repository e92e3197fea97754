// Paged attention on the CPU: work items of (sequence, kv head, up to 16 query tokens)
// handed out dynamically; keys and values are converted from fp16 a tile of 16 positions
// at a time and shared by every query row of the item (all q heads of the group).
#include "troupe/cpu/attention.hpp"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "troupe/model/quant.hpp"

namespace troupe::cpu {

namespace {

constexpr int tile_keys = 16;
constexpr int tokens_per_item = 16;

struct work_item {
  int32_t seq;
  int32_t kv_head;
  int32_t token_begin;
  int32_t token_end;
};

struct layer_view {
  const kv_memory* kv;
  int32_t layer;
  int32_t head_dim;
  int32_t group;       // q heads per kv head
  int32_t q_dim;
  float scale;
};

// The fp16 key and value of one kv head at position pos, found through the block table.
struct kv_row {
  const uint16_t* k;
  const uint16_t* v;
};

inline kv_row row_at(const layer_view& v, const attention_sequence& s, int32_t kv_head, int32_t pos) {
  const int32_t bs = v.kv->block_size();
  const int32_t block = s.block_table[pos / bs];
  return {v.kv->key(v.layer, block, pos % bs) + kv_head * v.head_dim,
          v.kv->value(v.layer, block, pos % bs) + kv_head * v.head_dim};
}

// Converts keys/values of positions [j0, j0 + n) of one kv head into fp32 tiles.
void load_tile_portable(const layer_view& v, const attention_sequence& s, int32_t kv_head, int32_t j0, int n,
                        float* k_tile, float* v_tile) {
  for (int i = 0; i < n; ++i) {
    const auto [k, vv] = row_at(v, s, kv_head, j0 + i);
    for (int d = 0; d < v.head_dim; ++d) {
      k_tile[i * v.head_dim + d] = fp16_to_fp32(k[d]);
      v_tile[i * v.head_dim + d] = fp16_to_fp32(vv[d]);
    }
  }
}

// Scores of every (row, key) pair, then a softmax per row normalised before it weights the
// values, with q and the probabilities rounded to fp16 on the way: the same roundings as
// llama.cpp's attention over an fp16 KV cache, so both agree to the last bits that matter.
void attend_portable(const layer_view& v, const attention_sequence& s, const work_item& w, const float* q,
                     float* out) {
  const int hd = v.head_dim;
  const int num_rows = (w.token_end - w.token_begin) * v.group;
  const int32_t num_keys = s.start_pos + w.token_end;
  std::vector<float> k_tile(tile_keys * hd), v_tile(tile_keys * hd), acc((size_t)num_rows * hd, 0.0f);
  std::vector<float> qh((size_t)num_rows * hd), probs((size_t)num_rows * num_keys, 0.0f);
  for (int r = 0; r < num_rows; ++r) {
    const float* qr = q + (int64_t)(s.first_row + w.token_begin + r / v.group) * v.q_dim +
                      (w.kv_head * v.group + r % v.group) * hd;
    for (int d = 0; d < hd; ++d) qh[(size_t)r * hd + d] = fp16_to_fp32(fp32_to_fp16(qr[d]));
  }
  for (int32_t j0 = 0; j0 < num_keys; j0 += tile_keys) {
    const int n = std::min<int32_t>(tile_keys, num_keys - j0);
    load_tile_portable(v, s, w.kv_head, j0, n, k_tile.data(), v_tile.data());
    for (int r = 0; r < num_rows; ++r) {
      const int32_t qpos = s.start_pos + w.token_begin + r / v.group;
      for (int i = 0; i < n && j0 + i <= qpos; ++i) {
        float dot = 0.0f;
        for (int d = 0; d < hd; ++d) dot += qh[(size_t)r * hd + d] * k_tile[i * hd + d];
        probs[(size_t)r * num_keys + j0 + i] = dot * v.scale;
      }
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
  for (int32_t j0 = 0; j0 < num_keys; j0 += tile_keys) {
    const int n = std::min<int32_t>(tile_keys, num_keys - j0);
    load_tile_portable(v, s, w.kv_head, j0, n, k_tile.data(), v_tile.data());
    for (int r = 0; r < num_rows; ++r) {
      const float* p = &probs[(size_t)r * num_keys + j0];
      float* a = &acc[(size_t)r * hd];
      for (int i = 0; i < n; ++i) {
        if (p[i] == 0.0f) continue;
        for (int d = 0; d < hd; ++d) a[d] += p[i] * v_tile[i * hd + d];
      }
    }
  }
  for (int r = 0; r < num_rows; ++r) {
    float* o = out + (int64_t)(s.first_row + w.token_begin + r / v.group) * v.q_dim +
               (w.kv_head * v.group + r % v.group) * hd;
    std::copy(&acc[(size_t)r * hd], &acc[(size_t)r * hd] + hd, o);
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

__attribute__((target("avx512f,f16c"))) void load_tile_avx512(const layer_view& v, const attention_sequence& s,
                                                               int32_t kv_head, int32_t j0, int n, float* k_tile,
                                                               float* v_tile) {
  for (int i = 0; i < n; ++i) {
    const auto [k, vv] = row_at(v, s, kv_head, j0 + i);
    for (int d = 0; d < v.head_dim; d += 16) {
      _mm512_storeu_ps(k_tile + i * v.head_dim + d, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(k + d))));
      _mm512_storeu_ps(v_tile + i * v.head_dim + d, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(vv + d))));
    }
  }
}

// head_dim % 16 == 0. The same two passes as attend_portable, 16 lanes at a time.
__attribute__((target("avx512f,f16c"))) void attend_avx512(const layer_view& v, const attention_sequence& s,
                                                            const work_item& w, const float* q, float* out) {
  const int hd = v.head_dim;
  const int num_rows = (w.token_end - w.token_begin) * v.group;
  const int32_t num_keys = s.start_pos + w.token_end;
  const int32_t stride = (num_keys + 15) & ~15;
  thread_local std::vector<float> k_tile, v_tile, acc, qh, probs;
  k_tile.resize(tile_keys * hd);
  v_tile.resize(tile_keys * hd);
  acc.assign((size_t)num_rows * hd, 0.0f);
  qh.resize((size_t)num_rows * hd);
  probs.assign((size_t)num_rows * stride, 0.0f);
  for (int r = 0; r < num_rows; ++r) {
    const float* qr = q + (int64_t)(s.first_row + w.token_begin + r / v.group) * v.q_dim +
                      (w.kv_head * v.group + r % v.group) * hd;
    for (int d = 0; d < hd; d += 16) {
      const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(qr + d), _MM_FROUND_TO_NEAREST_INT);
      _mm512_storeu_ps(&qh[(size_t)r * hd + d], _mm512_cvtph_ps(h));
    }
  }
  for (int32_t j0 = 0; j0 < num_keys; j0 += tile_keys) {
    const int n = std::min<int32_t>(tile_keys, num_keys - j0);
    load_tile_avx512(v, s, w.kv_head, j0, n, k_tile.data(), v_tile.data());
    for (int r = 0; r < num_rows; ++r) {
      const int32_t qpos = s.start_pos + w.token_begin + r / v.group;
      const int valid = std::min<int32_t>(n, qpos - j0 + 1);
      const float* qr = &qh[(size_t)r * hd];
      float* p = &probs[(size_t)r * stride + j0];
      for (int i = 0; i < valid; ++i) {
        __m512 sum = _mm512_setzero_ps();
        for (int d = 0; d < hd; d += 16) {
          sum = _mm512_fmadd_ps(_mm512_loadu_ps(qr + d), _mm512_loadu_ps(k_tile.data() + i * hd + d), sum);
        }
        p[i] = _mm512_reduce_add_ps(sum) * v.scale;
      }
    }
  }
  for (int r = 0; r < num_rows; ++r) {
    const int32_t count = s.start_pos + w.token_begin + r / v.group + 1;
    float* p = &probs[(size_t)r * stride];
    __m512 mv = _mm512_set1_ps(-INFINITY);
    for (int32_t j = 0; j < count; j += 16) {
      const __mmask16 k = (__mmask16)(count - j >= 16 ? 0xffff : (1u << (count - j)) - 1u);
      mv = _mm512_max_ps(mv, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, p + j));
    }
    const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
    double sum = 0.0;
    for (int32_t j = 0; j < count; j += 16) {
      const __mmask16 k = (__mmask16)(count - j >= 16 ? 0xffff : (1u << (count - j)) - 1u);
      const __m512 e = _mm512_maskz_mov_ps(k, exp512(_mm512_sub_ps(_mm512_loadu_ps(p + j), m)));
      _mm512_storeu_ps(p + j, e);
      sum += (double)_mm512_reduce_add_ps(e);
    }
    const __m512 inv = _mm512_set1_ps((float)(1.0 / sum));
    for (int32_t j = 0; j < count; j += 16) {
      const __m256i h = _mm512_cvtps_ph(_mm512_mul_ps(_mm512_loadu_ps(p + j), inv), _MM_FROUND_TO_NEAREST_INT);
      _mm512_storeu_ps(p + j, _mm512_cvtph_ps(h));
    }
  }
  for (int32_t j0 = 0; j0 < num_keys; j0 += tile_keys) {
    const int n = std::min<int32_t>(tile_keys, num_keys - j0);
    load_tile_avx512(v, s, w.kv_head, j0, n, k_tile.data(), v_tile.data());
    for (int r = 0; r < num_rows; ++r) {
      const float* p = &probs[(size_t)r * stride + j0];
      float* a = &acc[(size_t)r * hd];
      for (int d = 0; d < hd; d += 16) {
        __m512 ad = _mm512_loadu_ps(a + d);
        for (int i = 0; i < n; ++i) {
          ad = _mm512_fmadd_ps(_mm512_set1_ps(p[i]), _mm512_loadu_ps(v_tile.data() + i * hd + d), ad);
        }
        _mm512_storeu_ps(a + d, ad);
      }
    }
  }
  for (int r = 0; r < num_rows; ++r) {
    float* o = out + (int64_t)(s.first_row + w.token_begin + r / v.group) * v.q_dim +
               (w.kv_head * v.group + r % v.group) * hd;
    std::copy(&acc[(size_t)r * hd], &acc[(size_t)r * hd] + hd, o);
  }
}

bool use_avx512(int32_t head_dim) {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("f16c");
  return has && head_dim % 16 == 0;
}

}  // namespace

void paged_attention(const kv_memory& kv, int32_t layer, const model_config& config,
                     std::span<const attention_sequence> sequences, const float* q, float* out,
                     thread_pool& pool) {
  thread_local std::vector<work_item> items;
  items.clear();
  for (int32_t s = 0; s < (int32_t)sequences.size(); ++s) {
    for (int32_t h = 0; h < config.num_kv_heads; ++h) {
      for (int32_t t = 0; t < sequences[s].num_tokens; t += tokens_per_item) {
        items.push_back({s, h, t, std::min(sequences[s].num_tokens, t + tokens_per_item)});
      }
    }
  }
  // Longest items first, so the dynamic hand-out ends evenly.
  std::sort(items.begin(), items.end(), [&](const work_item& a, const work_item& b) {
    return sequences[a.seq].start_pos + a.token_end > sequences[b.seq].start_pos + b.token_end;
  });
  const layer_view view{&kv, layer, config.head_dim, config.num_heads / config.num_kv_heads, config.q_dim(),
                        1.0f / std::sqrt((float)config.head_dim)};
  const bool avx512 = use_avx512(config.head_dim);
  std::atomic<size_t> next{0};
  const auto& work = items;
  pool.run([&](int, int) {
    for (size_t i = next.fetch_add(1); i < work.size(); i = next.fetch_add(1)) {
      const auto& w = work[i];
      if (avx512) {
        attend_avx512(view, sequences[w.seq], w, q, out);
      } else {
        attend_portable(view, sequences[w.seq], w, q, out);
      }
    }
  });
}

}  // namespace troupe::cpu
