// Internal to cpu/: the packed weight layout shared by the packer and the kernels of every
// instruction-set path, the quantized-activation view, and the per-path kernel table.
//
// Integer layout. Rows are grouped 16 at a time (one zmm of int32 lanes, lane = row); a
// group's blocks of 32 columns are contiguous. For group g and block b:
//   qs:     nib formats 256 bytes, byte formats 512 bytes. Chunk j (64 bytes) holds, for lane
//           r at bytes 4r..4r+3, row r's values 4j..4j+3 (byte formats, j < 8), or for nib
//           formats (j < 4) values 4j..4j+3 in the low nibbles and 16+4j..16+4j+3 in the
//           high nibbles -- which is exactly Q4_0/Q4_1's qs[4j..4j+3] of that row.
//   scales: d[16] then, for formats with a stored min, m[16]; fp16 or fp32.
// Values are unsigned (0..15 or 0..255); the dequantized weight is d*u + m. Formats without
// a stored min have m = min_factor * d (Q4_0: -8, Q5_0: -16, Q8_0: -128).
// With activations a = d_a*q_a in blocks of 32 and s_a = d_a*sum(q_a), one block gives
//   y += d*d_a*dot(u, q_a) + m*s_a.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "troupe/cpu/matmul.hpp"

namespace troupe::cpu::detail {

constexpr int64_t rows_per_group = 16;
constexpr int64_t block_cols = 32;

enum class int_format : uint8_t {
  nib_f16_min,   // Q4_1
  nib_f16_sym,   // Q4_0
  byte_f16_min,  // Q5_1
  byte_f16_sym,  // Q8_0, Q5_0
  nib_f32_min,   // Q4_K (sub-block scales folded into fp32 d and m)
};

constexpr bool is_nib(int_format f) {
  return f == int_format::nib_f16_min || f == int_format::nib_f16_sym || f == int_format::nib_f32_min;
}
constexpr bool has_f32_scales(int_format f) { return f == int_format::nib_f32_min; }
constexpr bool has_stored_min(int_format f) {
  return f == int_format::nib_f16_min || f == int_format::byte_f16_min || f == int_format::nib_f32_min;
}
// Q4_1 and Q5_1 pair with llama.cpp's Q8_1 activations, whose sum term is rounded to fp16;
// the others need the exact d*sum(q) (the symmetric formats' offset must cancel exactly).
constexpr bool uses_q8_1_sum(int_format f) { return f == int_format::nib_f16_min || f == int_format::byte_f16_min; }
constexpr int64_t qs_block_bytes(int_format f) { return is_nib(f) ? 256 : 512; }
constexpr int64_t scales_block_bytes(int_format f) {
  return (has_f32_scales(f) ? 4 : 2) * rows_per_group * (has_stored_min(f) ? 2 : 1);
}

// Row groups per unit of work that matmul hands a thread: the AVX-512 kernels stream 8
// groups at once for a single token and tile 4 groups by several tokens for batches.
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

  // Float path: rows as stored in the file (F32, F16, BF16, Q6_K), converted per row tile.
  detail::aligned_bytes raw;
  size_t raw_row_bytes = 0;

  size_t num_bytes = 0;

  int64_t qs_group_stride() const { return num_blocks * detail::qs_block_bytes(format); }
  int64_t scales_group_stride() const { return num_blocks * detail::scales_block_bytes(format); }
};

}  // namespace troupe::cpu

namespace troupe::cpu::detail {

// Activations quantized to blocks of 32 (see quantize_row_q8): token t's values at
// q + t*num_cols, its per-block d, s, s_exact and sum at + t*num_blocks.
struct act_view {
  const int8_t* q;
  const float* d;
  const float* s;
  const float* s_exact;
  const int32_t* sum;
  int64_t num_cols;
  int64_t num_blocks;
};

struct kernel_table {
  // Quantizes num_tokens rows of num_cols floats (num_cols % 32 == 0).
  void (*quantize)(const float* x, int64_t num_tokens, int64_t num_cols, int8_t* q, float* d, float* s,
                   float* s_exact, int32_t* sum);
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
