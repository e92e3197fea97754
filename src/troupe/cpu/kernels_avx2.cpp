// AVX2 kernels (compiled for that target per function, chosen at run time): the same packed
// layout as AVX-512, each 16-row group as two ymm halves, vpdpbusd emulated by
// vpmaddubsw + vpmaddwd (a sign trick keeps byte formats clear of int16 saturation). One
// token streams a whole group; batches take 8 rows by 4 tokens, unpacking each weight chunk
// once for the 4 and summing products in int16 where the value range allows. Each vpmaddubsw
// comes with a broadcast and an add, so the tiles are bound by how many instructions they
// issue per product rather than by the multiplier: hence no spills, and for Q6_K one float
// update per block.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "troupe/cpu/packed_layout.hpp"

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi,bmi2")


namespace troupe::cpu::detail {
namespace {

inline __m256i broadcast_4_bytes(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// acc + per-lane sums of 4 products u*a, with u <= 15 (no int16 saturation possible).
inline __m256i dot_nib(__m256i acc, __m256i u, __m256i a) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), _mm256_set1_epi16(1)));
}

// acc + per-lane sums of 4 products (u-128)*a: |u-128| <= 128 and |a| <= 127 stay in int16.
inline __m256i dot_byte_centered(__m256i acc, __m256i u, __m256i a) {
  const __m256i w = _mm256_xor_si256(u, _mm256_set1_epi8(static_cast<char>(0x80)));
  const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w));
  return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

// Pins v to a register at this point. Without it GCC reassociates a chain of int16 sums into a
// tree: it computes every product of a block first and spills most of them to the stack. With
// it (and the block's loops fully unrolled) the batch tiles run 5-30% faster per core,
// depending on the format (bench_matmul, 64 tokens, one thread).
inline void keep_in_register(__m256i& v) { asm("" : "+x"(v)); }

inline __m256 load_f16x8(const uint8_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 u8x8_to_fp32(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
inline __m256 i8x8_to_fp32(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

// Lanes 8*hf..8*hf+7 of half h, chunk j of one packed block (see the AVX-512 block_values).
template <int_format F>
inline __m256i block_values(const uint8_t* qs, int h, int j, int hf) {
  if constexpr (is_byte(F)) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 64 * (4 * h + j) + 32 * hf));
  } else {
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 64 * j + 32 * hf));
    const __m256i low = h == 0 ? _mm256_and_si256(raw, low4) : _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
    if constexpr (has_5_bits(F)) {
      const __m256i high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + high_plane_offset + 32 * hf));
      const int at = 2 * j + h;
      const __m256i moved = at < 4 ? _mm256_sll_epi16(high, _mm_cvtsi32_si128(4 - at))
                                   : _mm256_srl_epi16(high, _mm_cvtsi32_si128(at - 4));
      return _mm256_or_si256(low, _mm256_and_si256(moved, _mm256_set1_epi8(0x10)));
    } else if constexpr (has_6_bits(F)) {
      const __m256i high =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + high_plane_offset + 64 * (j / 2) + 32 * hf));
      const int shift = 4 * (j % 2) + 2 * h;
      const __m256i moved = shift == 0   ? _mm256_slli_epi16(high, 4)
                            : shift == 2 ? _mm256_slli_epi16(high, 2)
                            : shift == 4 ? high
                                         : _mm256_srli_epi16(high, 2);
      return _mm256_or_si256(low, _mm256_and_si256(moved, _mm256_set1_epi8(0x30)));
    } else {
      return low;
    }
  }
}

// The integer dot's starting value for one token's block ab: the byte formats' +128 offset,
// else 0. (Q6_K, with its half-block scales, has a tile of its own: half_tile_half_scales.)
template <int_format F>
inline int32_t dot_init(const act_view& act, int64_t ab) {
  if constexpr (is_byte(F)) return act.sum[ab] * 128;  // dot(u, a) = dot(u - 128, a) + 128*sum(a)
  return 0;
}

// Half hf's per-row scale d and minimum m of one block.
template <int_format F>
inline void block_scales(const packed_matrix::impl& w, const uint8_t* sc, const uint8_t* sup, int hf, __m256& d,
                         __m256& m) {
  static_assert(!has_half_scales(F));
  if constexpr (is_k(F)) {
    d = _mm256_mul_ps(load_f16x8(sup + 16 * hf), u8x8_to_fp32(sc + 8 * hf));
    m = _mm256_mul_ps(load_f16x8(sup + 2 * rows_per_group + 16 * hf), u8x8_to_fp32(sc + rows_per_group + 8 * hf));
  } else {
    d = load_f16x8(sc + 16 * hf);
    m = has_stored_min(F) ? load_f16x8(sc + 32 + 16 * hf) : _mm256_mul_ps(d, _mm256_set1_ps(w.min_factor));
  }
}

// acc + one token's block: d*d_a*dot, and the minimum term m*s_a (subtracted for K formats).
template <int_format F>
inline __m256 add_block(__m256 acc, __m256i dot, __m256 d, __m256 m, float act_d, float act_s) {
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(d, _mm256_set1_ps(act_d)), acc);
  if constexpr (is_k(F)) return _mm256_fnmadd_ps(m, _mm256_set1_ps(act_s), acc);
  else return _mm256_fmadd_ps(m, _mm256_set1_ps(act_s), acc);
}

// Group g's packed weights, block by block: values, block scales and (K formats) the
// super-block scales the block falls in.
template <int_format F>
struct group_blocks {
  const uint8_t* qs;
  const uint8_t* scales;
  const uint8_t* super;
  group_blocks(const packed_matrix::impl& w, int64_t g)
      : qs(w.qs.get() + g * w.qs_group_stride()),
        scales(w.scales.get() + g * w.scales_group_stride()),
        super(is_k(F) ? w.super_scales.get() + g * w.super_group_stride() : nullptr) {}
  const uint8_t* values(int64_t b) const { return qs + b * qs_block_bytes(F); }
  const uint8_t* block_scales(int64_t b) const { return scales + b * scales_block_bytes(F); }
  const uint8_t* super_scales(int64_t b) const {
    return is_k(F) ? super + b / blocks_per_super * super_bytes(F) : nullptr;
  }
};

// One group of 16 rows (two halves of 8) times T tokens.
template <int_format F, int T>
void tile(const packed_matrix::impl& w, int64_t g, const act_view& act, int64_t t0, float* y) {
  const int64_t nb = w.num_blocks;
  const group_blocks<F> blocks(w, g);
  const float* as = uses_q8_1_sum(F) ? act.s : act.s_exact;
  __m256 acc[T][2];
  for (int t = 0; t < T; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();

  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* qs = blocks.values(b);
    const uint8_t* sc = blocks.block_scales(b);
    const uint8_t* sup = blocks.super_scales(b);
    __m256i dot[T][2];
    for (int t = 0; t < T; ++t) {
      dot[t][0] = dot[t][1] = _mm256_set1_epi32(dot_init<F>(act, (t0 + t) * nb + b));
      const int8_t* aq = act.q + (t0 + t) * act.num_cols + 32 * b;
      for (int h = 0; h < 2; ++h) {
        for (int j = 0; j < 4; ++j) {
          const __m256i a = broadcast_4_bytes(aq + 16 * h + 4 * j);
          for (int hf = 0; hf < 2; ++hf) {
            const __m256i u = block_values<F>(qs, h, j, hf);
            if constexpr (is_byte(F)) dot[t][hf] = dot_byte_centered(dot[t][hf], u, a);
            else dot[t][hf] = dot_nib(dot[t][hf], u, a);
          }
        }
      }
    }
    for (int hf = 0; hf < 2; ++hf) {
      __m256 d, m;
      block_scales<F>(w, sc, sup, hf, d, m);
      for (int t = 0; t < T; ++t) {
        const int64_t ab = (t0 + t) * nb + b;
        acc[t][hf] = add_block<F>(acc[t][hf], dot[t][hf], d, m, act.d[ab], as[ab]);
      }
    }
  }

  const int64_t row0 = g * rows_per_group;
  const int64_t num_valid = std::min<int64_t>(rows_per_group, w.num_rows - row0);
  for (int t = 0; t < T; ++t) {
    float out[16];
    _mm256_storeu_ps(out, acc[t][0]);
    _mm256_storeu_ps(out + 8, acc[t][1]);
    std::memcpy(y + (t0 + t) * w.num_rows + row0, out, sizeof(float) * static_cast<size_t>(num_valid));
  }
}

// Writes half hf (8 rows) of group g for T tokens, leaving out rows past the matrix.
template <int T>
void store_half(const __m256 (&acc)[T], const packed_matrix::impl& w, int64_t g, int hf, int64_t t0, float* y) {
  const int64_t row0 = g * rows_per_group + 8 * hf;
  const int64_t num_valid = std::clamp<int64_t>(w.num_rows - row0, 0, 8);
  for (int t = 0; t < T; ++t) {
    float out[8];
    _mm256_storeu_ps(out, acc[t]);
    std::memcpy(y + (t0 + t) * w.num_rows + row0, out, sizeof(float) * static_cast<size_t>(num_valid));
  }
}

// How many vpmaddubsw results of a format may be summed in int16 before vpmaddwd: a pair
// sum is at most 2*15*127 = 3,810 for 4-bit values (8 fit), 7,874 for 5-bit (4), 16,002
// for 6-bit (2) and 32,512 for centered bytes (1) under 32,767.
template <int_format F>
constexpr int int16_terms() {
  return is_byte(F) ? 1 : has_6_bits(F) ? 2 : has_5_bits(F) ? 4 : 8;
}

// Half hf (8 rows) of group g times T tokens, for batches: each chunk of weights is unpacked
// once for the T tokens, and products are summed in int16 as far as int16_terms allows.
template <int_format F, int T>
void half_tile(const packed_matrix::impl& w, int64_t g, int hf, const act_view& act, int64_t t0, float* y) {
  constexpr int terms = int16_terms<F>();
  static_assert(8 % terms == 0, "a block's 8 chunks end on a flush of the int16 sums");
  const int64_t nb = w.num_blocks;
  const group_blocks<F> blocks(w, g);
  const float* as = uses_q8_1_sum(F) ? act.s : act.s_exact;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();

  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* qs = blocks.values(b);
    const uint8_t* sc = blocks.block_scales(b);
    const uint8_t* sup = blocks.super_scales(b);
    const int8_t* aq[T];
    for (int t = 0; t < T; ++t) aq[t] = act.q + (t0 + t) * act.num_cols + 32 * b;
    __m256i dot[T], part[T];
    for (int t = 0; t < T; ++t) dot[t] = _mm256_set1_epi32(dot_init<F>(act, (t0 + t) * nb + b));
    int n = 0;  // products summed in part[] so far
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const __m256i u = block_values<F>(qs, h, j, hf);
        __m256i ua, centered;
        if constexpr (is_byte(F)) {
          centered = _mm256_xor_si256(u, _mm256_set1_epi8(static_cast<char>(0x80)));
          ua = _mm256_abs_epi8(centered);
        }
        for (int t = 0; t < T; ++t) {
          const __m256i a = broadcast_4_bytes(aq[t] + 16 * h + 4 * j);
          __m256i p;
          if constexpr (is_byte(F)) p = _mm256_maddubs_epi16(ua, _mm256_sign_epi8(a, centered));
          else p = _mm256_maddubs_epi16(u, a);
          part[t] = n == 0 ? p : _mm256_add_epi16(part[t], p);
          keep_in_register(part[t]);
        }
        if (++n == terms) {
          for (int t = 0; t < T; ++t) dot[t] = _mm256_add_epi32(dot[t], _mm256_madd_epi16(part[t], ones));
          n = 0;
        }
      }
    }
    __m256 d, m;
    block_scales<F>(w, sc, sup, hf, d, m);
    for (int t = 0; t < T; ++t) {
      const int64_t ab = (t0 + t) * nb + b;
      acc[t] = add_block<F>(acc[t], dot[t], d, m, act.d[ab], as[ab]);
    }
  }

  store_half<T>(acc, w, g, hf, t0, y);
}

// Eight sign-extended int8 values as int16 pairs, each value twice: the multiplier that
// vpmaddwd applies to both int16 sums of an int32 lane.
inline __m256i scales_as_int16_pairs(const uint8_t* p) {
  const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(v, v));
}

// half_tile for Q6_K: its two half-block scales are small integers, so vpmaddwd applies them
// to the int16 sums (in place of a multiply by 1) and a block takes one float update per
// token rather than one per half. With sc_h each row's scale of half h and S_h the token's
// sum over that half, the block's integer dot is sum_h sc_h*(dot_h(u, q_a) - 32*S_h), and
// y += D*d_a*dot. Magnitudes: an int16 sum of two products is at most 2*2*63*127 = 32,004,
// times |sc| <= 128 twice is 8.2e6 per vpmaddwd; a block stays under 2^26.
template <int T>
void half_tile_half_scales(const packed_matrix::impl& w, int64_t g, int hf, const act_view& act, int64_t t0,
                           float* y) {
  constexpr int_format F = int_format::nib6_k_half;
  constexpr int terms = int16_terms<F>();
  const int64_t nb = w.num_blocks;
  const group_blocks<F> blocks(w, g);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();

  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* qs = blocks.values(b);
    const uint8_t* sc = blocks.block_scales(b) + 8 * hf;
    const __m256 d_super = load_f16x8(blocks.super_scales(b) + 16 * hf);
    const __m256i sc_half[2] = {scales_as_int16_pairs(sc), scales_as_int16_pairs(sc + rows_per_group)};
    // Per lane (sc_0, sc_1) as int16: with a token's (S_0, S_1) broadcast (act.sum_halves),
    // one vpmaddwd gives sc_0*S_0 + sc_1*S_1.
    const __m128i sc_lo = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc));
    const __m128i sc_hi = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc + rows_per_group));
    const __m256i sc_both = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(sc_lo, sc_hi));
    const int8_t* aq[T];
    __m256i dot[T], part[T];
    for (int t = 0; t < T; ++t) {
      aq[t] = act.q + (t0 + t) * act.num_cols + 32 * b;
      dot[t] = _mm256_setzero_si256();
    }
    // Fully unrolled: left to itself GCC keeps the half loop and spills the unpacked values.
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      int n = 0;
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const __m256i u = block_values<F>(qs, h, j, hf);
        for (int t = 0; t < T; ++t) {
          const __m256i p = _mm256_maddubs_epi16(u, broadcast_4_bytes(aq[t] + 16 * h + 4 * j));
          part[t] = n == 0 ? p : _mm256_add_epi16(part[t], p);
          keep_in_register(part[t]);
        }
        if (++n == terms) {
          for (int t = 0; t < T; ++t) dot[t] = _mm256_add_epi32(dot[t], _mm256_madd_epi16(part[t], sc_half[h]));
          n = 0;
        }
      }
    }
    for (int t = 0; t < T; ++t) {
      const int64_t ab = (t0 + t) * nb + b;
      const __m256i offset = _mm256_madd_epi16(sc_both, _mm256_set1_epi32(act.sum_halves[ab]));
      dot[t] = _mm256_sub_epi32(dot[t], _mm256_slli_epi32(offset, 5));
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[t]), _mm256_mul_ps(d_super, _mm256_set1_ps(act.d[ab])), acc[t]);
    }
  }

  store_half<T>(acc, w, g, hf, t0, y);
}

// Both halves of group g times T tokens, for the 4-bit formats (Q4_0, Q4_1, Q4_K): each
// activation broadcast feeds the two halves' products, which saves one instruction in five.
// Sixteen ymm registers do not hold both halves' int16 sums and float sums for 4 tokens, so
// the float sums live in memory: a load and a store per block cost less than the broadcasts
// saved (bench_matmul: about 10% per core on Q4_K at 64 tokens).
template <int_format F, int T>
void group_tile(const packed_matrix::impl& w, int64_t g, const act_view& act, int64_t t0, float* y) {
  static_assert(int16_terms<F>() == 8 && !is_byte(F) && !has_high_plane(F) && !has_half_scales(F));
  const int64_t nb = w.num_blocks;
  const group_blocks<F> blocks(w, g);
  const float* as = uses_q8_1_sum(F) ? act.s : act.s_exact;
  const __m256i ones = _mm256_set1_epi16(1);
  alignas(32) float acc[T][rows_per_group] = {};

  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* qs = blocks.values(b);
    const uint8_t* sc = blocks.block_scales(b);
    const uint8_t* sup = blocks.super_scales(b);
    const int8_t* aq[T];
    for (int t = 0; t < T; ++t) aq[t] = act.q + (t0 + t) * act.num_cols + 32 * b;
    __m256i part[T][2];
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const __m256i u0 = block_values<F>(qs, h, j, 0);
        const __m256i u1 = block_values<F>(qs, h, j, 1);
        const bool first = h == 0 && j == 0;
#pragma GCC unroll 4
        for (int t = 0; t < T; ++t) {
          const __m256i a = broadcast_4_bytes(aq[t] + 16 * h + 4 * j);
          const __m256i p0 = _mm256_maddubs_epi16(u0, a);
          const __m256i p1 = _mm256_maddubs_epi16(u1, a);
          part[t][0] = first ? p0 : _mm256_add_epi16(part[t][0], p0);
          part[t][1] = first ? p1 : _mm256_add_epi16(part[t][1], p1);
          keep_in_register(part[t][0]);
          keep_in_register(part[t][1]);
        }
      }
    }
    __m256 d[2], m[2];
    for (int hf = 0; hf < 2; ++hf) block_scales<F>(w, sc, sup, hf, d[hf], m[hf]);
    for (int t = 0; t < T; ++t) {
      const int64_t ab = (t0 + t) * nb + b;
      for (int hf = 0; hf < 2; ++hf) {
        const __m256i dot = _mm256_madd_epi16(part[t][hf], ones);  // these formats start at 0
        const __m256 sum = add_block<F>(_mm256_load_ps(acc[t] + 8 * hf), dot, d[hf], m[hf], act.d[ab], as[ab]);
        _mm256_store_ps(acc[t] + 8 * hf, sum);
      }
    }
  }

  const int64_t row0 = g * rows_per_group;
  const int64_t num_valid = std::min<int64_t>(rows_per_group, w.num_rows - row0);
  for (int t = 0; t < T; ++t)
    std::memcpy(y + (t0 + t) * w.num_rows + row0, acc[t], sizeof(float) * static_cast<size_t>(num_valid));
}

template <int_format F, int T>
void both_halves(const packed_matrix::impl& w, int64_t g, const act_view& act, int64_t t0, float* y) {
  if constexpr (int16_terms<F>() == 8 && !has_high_plane(F)) {
    group_tile<F, T>(w, g, act, t0, y);
  } else if constexpr (has_half_scales(F)) {
    half_tile_half_scales<T>(w, g, 0, act, t0, y);
    if (g * rows_per_group + 8 < w.num_rows) half_tile_half_scales<T>(w, g, 1, act, t0, y);
  } else {
    half_tile<F, T>(w, g, 0, act, t0, y);
    if (g * rows_per_group + 8 < w.num_rows) half_tile<F, T>(w, g, 1, act, t0, y);
  }
}

template <int_format F>
void int_groups_format(const packed_matrix::impl& w, int64_t group_begin, int64_t group_end,
                       const act_view& act, int64_t num_tokens, float* y) {
  for (int64_t g = group_begin; g < group_end; ++g) {
    // Q6_K's batch tile sums a block's halves in integers before its one float update; the
    // streaming one-token tile would round each half apart. A token's result must not depend
    // on the batch it is in (speculative verification runs 1 + k tokens where plain decoding
    // runs one), so Q6_K takes the batch tile for one token too.
    if constexpr (!has_half_scales(F)) {
      if (num_tokens == 1) {
        tile<F, 1>(w, g, act, 0, y);
        continue;
      }
    }
    int64_t t0 = 0;
    for (; t0 + 4 <= num_tokens; t0 += 4) both_halves<F, 4>(w, g, act, t0, y);
    switch (num_tokens - t0) {
      case 3: both_halves<F, 3>(w, g, act, t0, y); break;
      case 2: both_halves<F, 2>(w, g, act, t0, y); break;
      case 1: both_halves<F, 1>(w, g, act, t0, y); break;
      default: break;
    }
  }
}

// quantize_row_q8's recipe, bit for bit, 8 lanes at a time.
void quantize_avx2(const float* x, int64_t num_tokens, int64_t num_cols, int8_t* q, float* d, float* s,
                   float* s_exact, int32_t* sum, int32_t* sum_lo) {
  const int64_t num_blocks_total = num_tokens * (num_cols / block_cols);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < num_blocks_total; ++b) {
    __m256 v[4];
    __m256 mx = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(x + 32 * b + 8 * i);
      mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v[i]));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
    const float amax = _mm_cvtss_f32(m4);
    const float scale = amax / 127.0f;
    const __m256 inverse = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    __m256i qi[4];
    for (int i = 0; i < 4; ++i) qi[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], inverse));
    // int32 -> int8 in order: the packs interleave 128-bit lanes, the permute undoes it.
    const __m256i w01 = _mm256_packs_epi32(qi[0], qi[1]);
    const __m256i w23 = _mm256_packs_epi32(qi[2], qi[3]);
    const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 32 * b), bytes);
    const __m256i lo = _mm256_add_epi32(qi[0], qi[1]);
    const __m256i all = _mm256_add_epi32(lo, _mm256_add_epi32(qi[2], qi[3]));
    const auto hsum = [](__m256i x) {
      __m128i t = _mm_add_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
      t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
      t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
      return _mm_cvtsi128_si32(t);
    };
    const int32_t total = hsum(all);
    sum_lo[b] = hsum(lo);
    d[b] = fp16_to_fp32(fp32_to_fp16(scale));
    s[b] = fp16_to_fp32(fp32_to_fp16(scale * static_cast<float>(total)));
    s_exact[b] = d[b] * static_cast<float>(total);
    sum[b] = total;
  }
}

void int_groups_avx2(const packed_matrix::impl& w, int64_t group_begin, int64_t group_end,
                     const act_view& act, int64_t num_tokens, float* y) {
  visit_format(w.format, [&](auto f) { int_groups_format<decltype(f)::value>(w, group_begin, group_end, act, num_tokens, y); });
}

void float_rows_avx2(const packed_matrix::impl& w, int64_t row_begin, int64_t row_end, const float* x,
                     int64_t num_tokens, float* y) {
  const int64_t n = w.num_cols;
  float* row = thread_scratch_floats(static_cast<size_t>(n));
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint8_t* src = w.raw.get() + static_cast<size_t>(r) * w.raw_row_bytes;
    if (w.type == ggml_type::f16) {
      int64_t k = 0;
      for (; k + 8 <= n; k += 8)
        _mm256_storeu_ps(row + k, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * k))));
      for (uint16_t h; k < n; ++k) { std::memcpy(&h, src + 2 * k, 2); row[k] = fp16_to_fp32(h); }
    } else {
      float_row(w, r, row);
    }
    for (int64_t t = 0; t < num_tokens; ++t) {
      const float* xt = x + t * n;
      __m256 acc = _mm256_setzero_ps();
      int64_t k = 0;
      for (; k + 8 <= n; k += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(row + k), _mm256_loadu_ps(xt + k), acc);
      float lanes[8];
      _mm256_storeu_ps(lanes, acc);
      float total = 0.0f;
      for (float v : lanes) total += v;
      for (; k < n; ++k) total += row[k] * xt[k];
      y[t * w.num_rows + r] = total;
    }
  }
}

}  // namespace
}  // namespace troupe::cpu::detail

#pragma GCC pop_options

namespace troupe::cpu::detail {
const kernel_table& avx2_kernels() {
  static const kernel_table table{quantize_avx2, int_groups_avx2, float_rows_avx2};
  return table;
}
}  // namespace troupe::cpu::detail
#else
namespace troupe::cpu::detail {
const kernel_table& avx2_kernels() { return portable_kernels(); }
}  // namespace troupe::cpu::detail
#endif
