// Paged attention on the CPU: work items of (sequence, kv head, up to 16 query tokens)
// handed out dynamically; keys and values are converted from fp16 a tile of 16 positions
// at a time and shared by every query row of the item (all q heads of the group), with an
// online softmax so no score matrix is materialised.
#include "cpu/attention.hpp"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "model/ops_math.hpp"
#include "model/quant.hpp"

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

// Converts keys/values of positions [j0, j0 + n) of one kv head into fp32 tiles.
void load_tile_portable(const layer_view& v, const attention_sequence& s, int32_t kv_head, int32_t j0, int n,
                        float* k_tile, float* v_tile) {
  const int32_t bs = v.kv->block_size();
  for (int i = 0; i < n; ++i) {
    const int32_t pos = j0 + i;
    const int32_t block = s.block_table[pos / bs];
    const uint16_t* k = v.kv->key(v.layer, block, pos % bs) + kv_head * v.head_dim;
    const uint16_t* vv = v.kv->value(v.layer, block, pos % bs) + kv_head * v.head_dim;
    for (int d = 0; d < v.head_dim; ++d) {
      k_tile[i * v.head_dim + d] = fp16_to_fp32(k[d]);
      v_tile[i * v.head_dim + d] = fp16_to_fp32(vv[d]);
    }
  }
}

void attend_portable(const layer_view& v, const attention_sequence& s, const work_item& w, const float* q,
                     float* out) {
  const int hd = v.head_dim;
  const int num_rows = (w.token_end - w.token_begin) * v.group;
  std::vector<float> k_tile(tile_keys * hd), v_tile(tile_keys * hd), acc(num_rows * hd, 0.0f);
  std::vector<online_softmax> stats(num_rows);
  const int32_t last_pos = s.start_pos + w.token_end - 1;
  for (int32_t j0 = 0; j0 <= last_pos; j0 += tile_keys) {
    const int n = std::min<int32_t>(tile_keys, last_pos - j0 + 1);
    load_tile_portable(v, s, w.kv_head, j0, n, k_tile.data(), v_tile.data());
    for (int r = 0; r < num_rows; ++r) {
      const int32_t t = w.token_begin + r / v.group;
      const int32_t head = w.kv_head * v.group + r % v.group;
      const int32_t qpos = s.start_pos + t;
      const float* qr = q + (int64_t)(s.first_row + t) * v.q_dim + head * hd;
      float* a = acc.data() + r * hd;
      for (int i = 0; i < n && j0 + i <= qpos; ++i) {
        float dot = 0.0f;
        for (int d = 0; d < hd; ++d) dot += qr[d] * k_tile[i * hd + d];
        float p;
        const float rescale = online_softmax_push(stats[r], dot * v.scale, p);
        for (int d = 0; d < hd; ++d) a[d] = a[d] * rescale + p * v_tile[i * hd + d];
      }
    }
  }
  for (int r = 0; r < num_rows; ++r) {
    const int32_t t = w.token_begin + r / v.group;
    const int32_t head = w.kv_head * v.group + r % v.group;
    float* o = out + (int64_t)(s.first_row + t) * v.q_dim + head * hd;
    const float inv = 1.0f / stats[r].l;
    for (int d = 0; d < hd; ++d) o[d] = acc[r * hd + d] * inv;
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
  const int32_t bs = v.kv->block_size();
  for (int i = 0; i < n; ++i) {
    const int32_t pos = j0 + i;
    const int32_t block = s.block_table[pos / bs];
    const uint16_t* k = v.kv->key(v.layer, block, pos % bs) + kv_head * v.head_dim;
    const uint16_t* vv = v.kv->value(v.layer, block, pos % bs) + kv_head * v.head_dim;
    for (int d = 0; d < v.head_dim; d += 16) {
      _mm512_storeu_ps(k_tile + i * v.head_dim + d, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(k + d))));
      _mm512_storeu_ps(v_tile + i * v.head_dim + d, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(vv + d))));
    }
  }
}

// head_dim % 16 == 0. Scores of a row for a tile are computed as 16 dot products, the
// softmax update and exp run on all 16 lanes at once.
__attribute__((target("avx512f,f16c"))) void attend_avx512(const layer_view& v, const attention_sequence& s,
                                                            const work_item& w, const float* q, float* out) {
  const int hd = v.head_dim;
  const int num_rows = (w.token_end - w.token_begin) * v.group;
  thread_local std::vector<float> k_tile, v_tile, acc, row_m, row_l;
  k_tile.resize(tile_keys * hd);
  v_tile.resize(tile_keys * hd);
  acc.assign((size_t)num_rows * hd, 0.0f);
  row_m.assign(num_rows, -INFINITY);
  row_l.assign(num_rows, 0.0f);
  const int32_t last_pos = s.start_pos + w.token_end - 1;
  alignas(64) float scores[tile_keys];
  for (int32_t j0 = 0; j0 <= last_pos; j0 += tile_keys) {
    const int n = std::min<int32_t>(tile_keys, last_pos - j0 + 1);
    load_tile_avx512(v, s, w.kv_head, j0, n, k_tile.data(), v_tile.data());
    for (int r = 0; r < num_rows; ++r) {
      const int32_t t = w.token_begin + r / v.group;
      const int32_t head = w.kv_head * v.group + r % v.group;
      const int32_t qpos = s.start_pos + t;
      const int valid = std::min<int32_t>(n, qpos - j0 + 1);
      if (valid <= 0) continue;
      const float* qr = q + (int64_t)(s.first_row + t) * v.q_dim + head * hd;
      for (int i = 0; i < valid; ++i) {
        __m512 sum = _mm512_setzero_ps();
        for (int d = 0; d < hd; d += 16) {
          sum = _mm512_fmadd_ps(_mm512_loadu_ps(qr + d), _mm512_loadu_ps(k_tile.data() + i * hd + d), sum);
        }
        scores[i] = _mm512_reduce_add_ps(sum) * v.scale;
      }
      const __mmask16 mask = (__mmask16)((1u << valid) - 1u);
      const __m512 sv = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), mask, scores);
      const float tile_max = _mm512_reduce_max_ps(sv);
      const float m_old = row_m[r];
      const float m_new = std::max(m_old, tile_max);
      const float rescale = (m_old == -INFINITY) ? 0.0f : std::exp(m_old - m_new);
      const __m512 p = _mm512_maskz_mov_ps(mask, exp512(_mm512_sub_ps(sv, _mm512_set1_ps(m_new))));
      row_l[r] = row_l[r] * rescale + _mm512_reduce_add_ps(p);
      row_m[r] = m_new;
      _mm512_store_ps(scores, p);
      float* a = acc.data() + (size_t)r * hd;
      const __m512 rs = _mm512_set1_ps(rescale);
      for (int d = 0; d < hd; d += 16) {
        __m512 ad = _mm512_mul_ps(_mm512_loadu_ps(a + d), rs);
        for (int i = 0; i < valid; ++i) {
          ad = _mm512_fmadd_ps(_mm512_set1_ps(scores[i]), _mm512_loadu_ps(v_tile.data() + i * hd + d), ad);
        }
        _mm512_storeu_ps(a + d, ad);
      }
    }
  }
  for (int r = 0; r < num_rows; ++r) {
    const int32_t t = w.token_begin + r / v.group;
    const int32_t head = w.kv_head * v.group + r % v.group;
    float* o = out + (int64_t)(s.first_row + t) * v.q_dim + head * hd;
    const __m512 inv = _mm512_set1_ps(1.0f / row_l[r]);
    for (int d = 0; d < hd; d += 16) _mm512_storeu_ps(o + d, _mm512_mul_ps(_mm512_loadu_ps(acc.data() + (size_t)r * hd + d), inv));
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
