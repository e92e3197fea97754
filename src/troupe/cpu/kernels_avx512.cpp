// AVX-512 VNNI kernels (compiled for that target per function, chosen at run time): a
// register-tiled int8 product, 16 rows per zmm lane set times up to 4 tokens, vpdpbusd on
// unsigned weights and signed activations, the float epilogue once per block of 32 (once
// per half for Q6_K). 5- and 6-bit values are rebuilt in registers from their planes.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "troupe/cpu/packed_layout.hpp"

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c,avx2,bmi,bmi2")

namespace troupe::cpu::detail {
namespace {

inline __m512i broadcast_4_bytes(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// The maskz form sidesteps GCC 12's -Wmaybe-uninitialized false positive in _mm512_cvtph_ps.
inline __m512 fp16x16_to_fp32(const void* p) {
  return _mm512_maskz_cvtph_ps(static_cast<__mmask16>(0xffff), _mm256_loadu_si256(static_cast<const __m256i*>(p)));
}

void quantize_avx512(const float* x, int64_t num_tokens, int64_t num_cols, int8_t* q, float* d, float* s,
                     float* s_exact, int32_t* sum, int32_t* sum_lo) {
  const int64_t num_blocks_total = num_tokens * (num_cols / block_cols);
  for (int64_t b = 0; b < num_blocks_total; ++b) {
    const __m512 x0 = _mm512_loadu_ps(x + 32 * b);
    const __m512 x1 = _mm512_loadu_ps(x + 32 * b + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
    const float scale = amax / 127.0f;  // the recipe of quantize_row_q8, bit for bit
    const __m512 inverse = _mm512_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, inverse));
    const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, inverse));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 32 * b), _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 32 * b + 16), _mm512_cvtepi32_epi8(q1));
    const int32_t total = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    sum_lo[b] = _mm512_reduce_add_epi32(q0);
    d[b] = fp16_to_fp32(fp32_to_fp16(scale));
    s[b] = fp16_to_fp32(fp32_to_fp16(scale * static_cast<float>(total)));
    s_exact[b] = d[b] * static_cast<float>(total);
    sum[b] = total;
  }
}

// The unsigned values of half h (0: values 0..15, 1: 16..31), chunk j (values 16h+4j..+3
// of every lane) of one packed block.
template <int_format F>
inline __m512i block_values(const uint8_t* qs, int h, int j) {
  if constexpr (is_byte(F)) {
    return _mm512_loadu_si512(qs + 64 * (4 * h + j));
  } else {
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    const __m512i raw = _mm512_loadu_si512(qs + 64 * j);
    const __m512i low = h == 0 ? _mm512_and_si512(raw, low4) : _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4);
    if constexpr (has_5_bits(F)) {
      // Bit 4 of the value sits at bit 2j+h of the high byte: move it to bit 4.
      const __m512i high = _mm512_loadu_si512(qs + high_plane_offset);
      const int at = 2 * j + h;
      const __m512i moved = at < 4 ? _mm512_sll_epi16(high, _mm_cvtsi32_si128(4 - at))
                                   : _mm512_srl_epi16(high, _mm_cvtsi32_si128(at - 4));
      return _mm512_ternarylogic_epi32(low, moved, _mm512_set1_epi8(0x10), 0xf8);  // low | (moved & 0x10)
    } else if constexpr (has_6_bits(F)) {
      // Bits 4-5 of the value sit at bit 4e+2h of the high byte (e = j%2): move them to 4-5.
      const __m512i high = _mm512_loadu_si512(qs + high_plane_offset + 64 * (j / 2));
      const int shift = 4 * (j % 2) + 2 * h;  // 0, 2, 4 or 6
      const __m512i moved = shift == 0   ? _mm512_slli_epi16(high, 4)
                            : shift == 2 ? _mm512_slli_epi16(high, 2)
                            : shift == 4 ? high
                                         : _mm512_srli_epi16(high, 2);
      return _mm512_ternarylogic_epi32(low, moved, _mm512_set1_epi8(0x30), 0xf8);  // low | (moved & 0x30)
    } else {
      return low;
    }
  }
}

inline __m512 u8x16_to_fp32(const uint8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
inline __m512 i8x16_to_fp32(const uint8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

// G groups of 16 rows (starting at group g0) times T tokens (starting at t0).
template <int_format F, int G, int T>
void tile(const packed_matrix::impl& w, int64_t g0, const act_view& act, int64_t t0, float* y) {
  constexpr int64_t qs_block = qs_block_bytes(F);
  constexpr int64_t sc_block = scales_block_bytes(F);
  constexpr int num_passes = has_half_scales(F) ? 2 : 1;  // epilogues per block
  const int64_t nb = w.num_blocks;
  const uint8_t* wq[G];
  const uint8_t* ws[G];
  const uint8_t* wsup[G] = {};
  for (int g = 0; g < G; ++g) {
    wq[g] = w.qs.get() + (g0 + g) * w.qs_group_stride();
    ws[g] = w.scales.get() + (g0 + g) * w.scales_group_stride();
    if constexpr (is_k(F)) wsup[g] = w.super_scales.get() + (g0 + g) * w.super_group_stride();
  }
  const int8_t* aq[T];
  for (int t = 0; t < T; ++t) aq[t] = act.q + (t0 + t) * act.num_cols;
  const float* ad = act.d + t0 * nb;
  const float* as = (uses_q8_1_sum(F) ? act.s : act.s_exact) + t0 * nb;
  const __m512 min_factor = _mm512_set1_ps(w.min_factor);

  __m512 acc[G][T];
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < T; ++t) acc[g][t] = _mm512_setzero_ps();

  for (int64_t b = 0; b < nb; ++b) {
    const int64_t sup_offset = b / blocks_per_super * super_bytes(F);
    for (int pass = 0; pass < num_passes; ++pass) {
      __m512i dot[G][T];
      for (int t = 0; t < T; ++t) {
        __m512i init = _mm512_setzero_si512();
        if constexpr (has_half_scales(F)) {
          const int32_t sum_lo = act.sum_lo[(t0 + t) * nb + b];
          init = _mm512_set1_epi32(-32 * (pass == 0 ? sum_lo : act.sum[(t0 + t) * nb + b] - sum_lo));
        }
        for (int g = 0; g < G; ++g) dot[g][t] = init;
      }
      const auto accumulate = [&](int h, int j) {
        __m512i u[G];
        for (int g = 0; g < G; ++g) u[g] = block_values<F>(wq[g] + b * qs_block, h, j);
        for (int t = 0; t < T; ++t) {
          const __m512i a = broadcast_4_bytes(aq[t] + 32 * b + 16 * h + 4 * j);
          for (int g = 0; g < G; ++g) dot[g][t] = _mm512_dpbusd_epi32(dot[g][t], u[g], a);
        }
      };
      if constexpr (has_half_scales(F)) {
        for (int j = 0; j < 4; ++j) accumulate(pass, j);
      } else {
        // Both halves of a chunk back to back: one load of its nibbles serves both
        // (measured: halves outermost cost Q4_1 ~10% at 1 and 512 tokens).
        for (int j = 0; j < 4; ++j) {
          accumulate(0, j);
          accumulate(1, j);
        }
      }
      for (int g = 0; g < G; ++g) {
        const uint8_t* sc = ws[g] + b * sc_block;
        __m512 d, m = _mm512_setzero_ps();
        if constexpr (has_half_scales(F)) {
          d = _mm512_mul_ps(fp16x16_to_fp32(wsup[g] + sup_offset), i8x16_to_fp32(sc + rows_per_group * pass));
        } else if constexpr (is_k(F)) {
          d = _mm512_mul_ps(fp16x16_to_fp32(wsup[g] + sup_offset), u8x16_to_fp32(sc));
          m = _mm512_mul_ps(fp16x16_to_fp32(wsup[g] + sup_offset + 2 * rows_per_group), u8x16_to_fp32(sc + rows_per_group));
        } else {
          d = fp16x16_to_fp32(sc);
          m = has_stored_min(F) ? fp16x16_to_fp32(sc + 32) : _mm512_mul_ps(d, min_factor);
        }
        for (int t = 0; t < T; ++t) {
          const __m512 scale = _mm512_mul_ps(d, _mm512_set1_ps(ad[t * nb + b]));
          acc[g][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[g][t]), scale, acc[g][t]);
          if constexpr (has_half_scales(F)) continue;
          else if constexpr (is_k(F)) acc[g][t] = _mm512_fnmadd_ps(m, _mm512_set1_ps(as[t * nb + b]), acc[g][t]);
          else acc[g][t] = _mm512_fmadd_ps(m, _mm512_set1_ps(as[t * nb + b]), acc[g][t]);
        }
      }
    }
  }

  for (int g = 0; g < G; ++g) {
    const int64_t row0 = (g0 + g) * rows_per_group;
    const int64_t num_valid = std::min<int64_t>(rows_per_group, w.num_rows - row0);
    const __mmask16 mask = static_cast<__mmask16>((1u << num_valid) - 1u);
    for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(y + (t0 + t) * w.num_rows + row0, mask, acc[g][t]);
  }
}

// Tokens [t0, t1) in tiles of TT (1 <= TT <= 4) and a smaller last tile, for G groups at g0.
template <int_format F, int G, int TT>
void tile_tokens(const packed_matrix::impl& w, int64_t g0, const act_view& act, int64_t t0, int64_t t1,
                 float* y) {
  int64_t t = t0;
  for (; t + TT <= t1; t += TT) tile<F, G, TT>(w, g0, act, t, y);
  switch (t1 - t) {
    case 0: return;
    case 1: return tile<F, G, 1>(w, g0, act, t, y);
    case 2: if constexpr (TT > 2) return tile<F, G, 2>(w, g0, act, t, y); else return;
    default: if constexpr (TT > 3) return tile<F, G, 3>(w, g0, act, t, y); else return;
  }
}

constexpr int64_t token_chunk = 128;  // activations of a chunk stay in L2 while the rows stream

// Register tiles of G groups x TT tokens over a range of groups and all tokens.
template <int_format F, int G, int TT>
void run_tiles(const packed_matrix::impl& w, int64_t group_begin, int64_t group_end, const act_view& act,
               int64_t num_tokens, float* y) {
  for (int64_t c0 = 0; c0 < num_tokens; c0 += token_chunk) {
    const int64_t c1 = std::min(num_tokens, c0 + token_chunk);
    int64_t g = group_begin;
    for (; g + G <= group_end; g += G) tile_tokens<F, G, TT>(w, g, act, c0, c1, y);
    for (; g < group_end; ++g) tile_tokens<F, 1, TT>(w, g, act, c0, c1, y);
  }
}

template <int_format F>
void int_groups_format(const packed_matrix::impl& w, int64_t group_begin, int64_t group_end,
                       const act_view& act, int64_t num_tokens, float* y) {
  if (num_tokens == 1) {
    // Bandwidth-bound: the more row groups stream at once, the better the memory system
    // overlaps them with the arithmetic, up to what the registers hold. Measured on one
    // thread over a 151,936 x 1,536 matrix (DRAM-resident), GB/s at 8 / 4 / 2 groups:
    // Q4_1 25.2 / 24.0 / 20.5, Q4_0 22.8 / 21.2 / 19.2 -- but the formats with a high
    // plane, byte values or K scales run out of registers at 8: Q4_K 18.4 / 20.3 / 18.5,
    // Q6_K 13.9 / 17.6 / 14.6, Q5_0 15.9 / 19.5 / 18.5, Q8_0 22.6 / 25.5 / 23.1.
    // Software prefetch on top measured no gain (Q4_1) or a loss (Q4_K, Q6_K).
    constexpr int wide = (F == int_format::nib_f16_min || F == int_format::nib_f16_sym) ? 8 : 4;
    int64_t g = group_begin;
    for (; g + wide <= group_end; g += wide) tile<F, wide, 1>(w, g, act, 0, y);
    if constexpr (wide == 8) {
      for (; g + 4 <= group_end; g += 4) tile<F, 4, 1>(w, g, act, 0, y);
    }
    for (; g < group_end; ++g) tile<F, 1, 1>(w, g, act, 0, y);
    return;
  }
  // Whole model's matmuls, CPU ms on one thread (2 groups x 4 tokens -> chosen tile):
  // 3 tokens 8.4 -> 7.1, 4 tokens 9.0 -> 7.7, 8 tokens 12.0 -> 11.0, 512 tokens 29.9 -> 28.7
  // (2 layers). Four groups keep more weight streams in flight; at many tokens 4x3 tiles
  // spill less than 4x4.
  if (num_tokens == 2) return run_tiles<F, 4, 2>(w, group_begin, group_end, act, num_tokens, y);
  if (num_tokens <= 8) return run_tiles<F, 4, 4>(w, group_begin, group_end, act, num_tokens, y);
  return run_tiles<F, 4, 3>(w, group_begin, group_end, act, num_tokens, y);
}

void int_groups_avx512(const packed_matrix::impl& w, int64_t group_begin, int64_t group_end,
                       const act_view& act, int64_t num_tokens, float* y) {
  visit_format(w.format, [&](auto f) { int_groups_format<decltype(f)::value>(w, group_begin, group_end, act, num_tokens, y); });
}

// Float path: a tile of 4 rows converted to fp32, then dotted with every token.
void convert_row(const packed_matrix::impl& w, int64_t row, float* out) {
  const uint8_t* src = w.raw.get() + static_cast<size_t>(row) * w.raw_row_bytes;
  const int64_t n = w.num_cols;
  int64_t k = 0;
  if (w.type == ggml_type::f16) {
    for (; k + 16 <= n; k += 16)
      _mm512_storeu_ps(out + k, fp16x16_to_fp32(src + 2 * k));
  } else if (w.type == ggml_type::bf16) {
    for (; k + 16 <= n; k += 16) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 2 * k));
      _mm512_storeu_ps(out + k, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
    }
  } else {
    float_row(w, row, out);
    return;
  }
  uint16_t h;
  for (; k < n; ++k) {
    std::memcpy(&h, src + 2 * k, 2);
    out[k] = w.type == ggml_type::f16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
  }
}

void float_rows_avx512(const packed_matrix::impl& w, int64_t row_begin, int64_t row_end, const float* x,
                       int64_t num_tokens, float* y) {
  constexpr int64_t tile_rows = 4;
  const int64_t n = w.num_cols;
  float* buffer = thread_scratch_floats(static_cast<size_t>(tile_rows * n));
  const float* rows[tile_rows];
  for (int64_t r0 = row_begin; r0 < row_end; r0 += tile_rows) {
    const int64_t nr = std::min(tile_rows, row_end - r0);
    for (int64_t i = 0; i < tile_rows; ++i) {
      if (i < nr && w.type == ggml_type::f32) {
        rows[i] = reinterpret_cast<const float*>(w.raw.get() + static_cast<size_t>(r0 + i) * w.raw_row_bytes);
      } else {
        rows[i] = buffer + i * n;
        if (i < nr) convert_row(w, r0 + i, buffer + i * n);
      }
    }
    for (int64_t t = 0; t < num_tokens; ++t) {
      const float* xt = x + t * n;
      __m512 acc[tile_rows];
      for (auto& a : acc) a = _mm512_setzero_ps();
      for (int64_t k = 0; k < n; k += 16) {
        const __mmask16 mask = n - k >= 16 ? static_cast<__mmask16>(0xffff)
                                           : static_cast<__mmask16>((1u << (n - k)) - 1u);
        const __m512 xv = _mm512_maskz_loadu_ps(mask, xt + k);
        for (int64_t i = 0; i < tile_rows; ++i)
          acc[i] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, rows[i] + k), xv, acc[i]);
      }
      for (int64_t i = 0; i < nr; ++i) y[t * w.num_rows + r0 + i] = _mm512_reduce_add_ps(acc[i]);
    }
  }
}

}  // namespace
}  // namespace troupe::cpu::detail

#pragma GCC pop_options

namespace troupe::cpu::detail {
const kernel_table& avx512_kernels() {
  static const kernel_table table{quantize_avx512, int_groups_avx512, float_rows_avx512};
  return table;
}
}  // namespace troupe::cpu::detail
#else
namespace troupe::cpu::detail {
const kernel_table& avx512_kernels() { return portable_kernels(); }
}  // namespace troupe::cpu::detail
#endif
