// Internal to cpu/: the packed weight layout shared by the packer and the kernels of every
// instruction-set path, the quantized-activation view, and the per-path kernel table.
//
// Integer layout. Rows are grouped 16 at a time (one zmm of int32 lanes, lane = row); a
// group's blocks of 32 columns are contiguous. For group g and block b:
//   qs:     a low plane, then for 5- and 6-bit formats a high plane of bit 4 (5-bit) or
//           bits 4-5 (6-bit) of each value.
//           Nibble low plane (256 bytes): chunk j < 4 (64 bytes) holds, for lane r at bytes
//           4r..4r+3, row r's values 4j..4j+3 in the low nibbles and 16+4j..16+4j+3 in the
//           high nibbles -- exactly Q4_0/Q4_1's qs[4j..4j+3] of that row.
//           Byte low plane (512 bytes): chunk j < 8 holds values 4j..4j+3 whole.
//           5-bit high plane (64 bytes, after a nibble plane): byte 4r+i holds, for j < 4
//           and h < 2, bit 4 of value 16h+4j+i at bit 2j+h.
//           6-bit high plane (128 bytes): chunk a < 2, byte 4r+i holds, for e < 2 and
//           j = 2a+e, bits 4-5 of value 4j+i at bit 4e and of value 16+4j+i at bit 4e+2.
//   scales: classic formats: d[16] then, with a stored min, m[16], fp16.
//           K formats: two bytes per lane, sub[0][16] then sub[1][16] -- Q4_K/Q5_K's 6-bit
//           scale and min of the block's 32 values, Q6_K's signed scales of its two halves.
//   super_scales: K formats only, per group and 256 columns: fp16 d[16] and, for Q4_K and
//           Q5_K, dmin[16]: the file's own super-block values (Q6_K has no dmin). With the
//           8-bit sub-block scales this stores Q6_K at the file's size and Q4_K/Q5_K at 1
//           byte per 32 values more (a 6-bit scale and minimum in a byte each).
// Values are unsigned (0..63 or 0..255); the dequantized weight is d*u + m. Classic formats
// without a stored min have m = min_factor * d (Q4_0: -8, Q5_0: -16, Q8_0: -128); Q4_K and
// Q5_K have d = D*sc, m = -DMIN*mn; Q6_K has d = D*sc_half and m = -32*d per half block.
// With activations a = d_a*q_a in blocks of 32 and s_a = d_a*sum(q_a), one block gives
//   y += d*d_a*dot(u, q_a) + m*s_a,
// and Q6_K, one half h at a time: y += d_h*d_a*(dot_h(u, q_a) - 32*sum_h(q_a)).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <type_traits>

#include "troupe/cpu/matmul.hpp"

namespace troupe::cpu::detail {

constexpr int64_t rows_per_group = 16;
constexpr int64_t block_cols = 32;

enum class int_format : uint8_t {
  nib_f16_min,   // Q4_1
  nib_f16_sym,   // Q4_0
  byte_f16_min,  // Q5_1
  byte_f16_sym,  // Q8_0
  nib5_f16_sym,  // Q5_0
  nib_k_min,     // Q4_K
  nib5_k_min,    // Q5_K
  nib6_k_half,   // Q6_K
};

// Calls fn(std::integral_constant<int_format, f>{}) for the format f: the one place that
// lists every format for the kernels templated on it (each ISA's integer path).
template <class Fn>
void visit_format(int_format f, Fn&& fn) {
  switch (f) {
#define TROUPE_FORMAT_CASE(x) \
  case int_format::x: return fn(std::integral_constant<int_format, int_format::x>{});
    TROUPE_FORMAT_CASE(nib_f16_min)
    TROUPE_FORMAT_CASE(nib_f16_sym)
    TROUPE_FORMAT_CASE(byte_f16_min)
    TROUPE_FORMAT_CASE(byte_f16_sym)
    TROUPE_FORMAT_CASE(nib5_f16_sym)
    TROUPE_FORMAT_CASE(nib_k_min)
    TROUPE_FORMAT_CASE(nib5_k_min)
    TROUPE_FORMAT_CASE(nib6_k_half)
#undef TROUPE_FORMAT_CASE
  }
}

constexpr bool is_byte(int_format f) { return f == int_format::byte_f16_min || f == int_format::byte_f16_sym; }
constexpr bool has_5_bits(int_format f) { return f == int_format::nib5_f16_sym || f == int_format::nib5_k_min; }
constexpr bool has_6_bits(int_format f) { return f == int_format::nib6_k_half; }
constexpr bool has_high_plane(int_format f) { return has_5_bits(f) || has_6_bits(f); }
constexpr bool is_k(int_format f) {
  return f == int_format::nib_k_min || f == int_format::nib5_k_min || f == int_format::nib6_k_half;
}
// Q6_K: each half of a block of 32 has its own scale.
constexpr bool has_half_scales(int_format f) { return f == int_format::nib6_k_half; }
// A classic format's m[16] after d[16].
constexpr bool has_stored_min(int_format f) { return f == int_format::nib_f16_min || f == int_format::byte_f16_min; }
// Q4_1 and Q5_1 pair with llama.cpp's Q8_1 activations, whose sum term is rounded to fp16;
// the others need the exact d*sum(q) (the symmetric formats' offset must cancel exactly).
constexpr bool uses_q8_1_sum(int_format f) { return f == int_format::nib_f16_min || f == int_format::byte_f16_min; }
constexpr int64_t qs_block_bytes(int_format f) {
  return is_byte(f) ? 512 : has_6_bits(f) ? 384 : has_5_bits(f) ? 320 : 256;
}
constexpr int64_t high_plane_offset = 256;
constexpr int64_t scales_block_bytes(int_format f) {
  return is_k(f) ? 2 * rows_per_group : 2 * rows_per_group * (has_stored_min(f) ? 2 : 1);
}
constexpr int64_t blocks_per_super = 8;                      // 256 columns
// fp16 d[16], then dmin[16] where the format has a minimum.
constexpr int64_t super_bytes(int_format f) { return (has_half_scales(f) ? 2 : 4) * rows_per_group; }

// Row groups per unit of work that matmul hands a thread: the AVX-512 kernels stream 8
// (Q4_0, Q4_1) or 4 (the other formats) groups at once for a single token and tile 4
// groups by several tokens for batches.
constexpr int64_t groups_per_unit(int64_t num_tokens) { return num_tokens == 1 ? 8 : 4; }

struct free_deleter {
  void operator()(void* p) const { std::free(p); }
};
using aligned_bytes = std::unique_ptr<uint8_t[], free_deleter>;
aligned_bytes allocate_aligned(size_t num_bytes);  // 64-byte aligned, zero-filled

}  // namespace troupe::cpu::detail

namespace troupe::cpu {

struct packed_matrix::impl {
  ggml_type type = ggml_type::f32;
  int64_t num_rows = 0;
  int64_t num_cols = 0;
  bool is_int = false;  // integer kernels with quantized activations, else the float path

  // Integer path.
  detail::int_format format = detail::int_format::nib_f16_min;
  float min_factor = 0.0f;
  int64_t num_groups = 0;
  int64_t num_blocks = 0;  // blocks of 32 per row
  detail::aligned_bytes qs;
  detail::aligned_bytes scales;
  detail::aligned_bytes super_scales;  // K formats only

  // Float path: rows as stored in the file (F32, F16, BF16), converted per row tile.
  detail::aligned_bytes raw;
  size_t raw_row_bytes = 0;

  size_t num_bytes = 0;

  int64_t qs_group_stride() const { return num_blocks * detail::qs_block_bytes(format); }
  int64_t scales_group_stride() const { return num_blocks * detail::scales_block_bytes(format); }
  int64_t super_group_stride() const {
    return num_blocks / detail::blocks_per_super * detail::super_bytes(format);
  }
};

}  // namespace troupe::cpu

namespace troupe::cpu::detail {

// Activations quantized to blocks of 32 (see quantize_row_q8): token t's values at
// q + t*num_cols, its per-block d, s, s_exact, sum and sum_lo at + t*num_blocks.
struct act_view {
  const int8_t* q;
  const float* d;
  const float* s;
  const float* s_exact;
  const int32_t* sum;
  const int32_t* sum_lo;  // sum of the block's first 16 values
  const int32_t* sum_halves;  // the two halves' sums as int16: first in the low, second in the high
  int64_t num_cols;
  int64_t num_blocks;
};

struct kernel_table {
  // Quantizes num_tokens rows of num_cols floats (num_cols % 32 == 0).
  void (*quantize)(const float* x, int64_t num_tokens, int64_t num_cols, int8_t* q, float* d, float* s,
                   float* s_exact, int32_t* sum, int32_t* sum_lo);
  // y rows [16*group_begin, 16*group_end) for every token; y has num_rows floats per token.
  void (*int_groups)(const packed_matrix::impl& w, int64_t group_begin, int64_t group_end,
                     const act_view& act, int64_t num_tokens, float* y);
  // y rows [row_begin, row_end) for every token from float activations x.
  void (*float_rows)(const packed_matrix::impl& w, int64_t row_begin, int64_t row_end, const float* x,
                     int64_t num_tokens, float* y);
};

const kernel_table& portable_kernels();
const kernel_table& avx2_kernels();
const kernel_table& avx512_kernels();

// Float path helper shared by all paths: row `row` of w as num_cols floats into out.
void float_row(const packed_matrix::impl& w, int64_t row, float* out);

// A per-thread buffer of at least num_floats floats, reused across calls (grows only).
// Defined in a baseline-ISA file so no std:: code is instantiated for a wider target.
float* thread_scratch_floats(size_t num_floats);

}  // namespace troupe::cpu::detail
