// The portable C++ kernels: plain loops over the packed layout. They define the arithmetic
// every wider path reproduces (integer block dot, then d*d_a*dot + m*s_a per block).
#include <cstring>

#include "troupe/cpu/packed_layout.hpp"
#include "troupe/cpu/quantize_activations.hpp"

namespace troupe::cpu::detail {
namespace {

void quantize_portable(const float* x, int64_t num_tokens, int64_t num_cols, int8_t* q, float* d, float* s,
                       float* s_exact, int32_t* sum, int32_t* sum_lo) {
  const int64_t nb = num_cols / block_cols;
  for (int64_t t = 0; t < num_tokens; ++t)
    quantize_row_q8(x + t * num_cols, num_cols, q + t * num_cols, d + t * nb, s + t * nb, s_exact + t * nb,
                    sum + t * nb, sum_lo + t * nb);
}

float load_f16(const uint8_t* p, int64_t index) {
  uint16_t h;
  std::memcpy(&h, p + 2 * index, 2);
  return fp16_to_fp32(h);
}

// Value k (0..31) of lane `lane` in one packed block (see packed_layout.hpp).
int unsigned_value(int_format f, const uint8_t* qs, int lane, int k) {
  if (is_byte(f)) return qs[64 * (k / 4) + 4 * lane + k % 4];
  const int half = k / 16, j = (k % 16) / 4, i = k % 4;
  const uint8_t byte = qs[64 * j + 4 * lane + i];
  const int low = half == 0 ? (byte & 15) : (byte >> 4);
  if (has_5_bits(f)) {
    const uint8_t high = qs[high_plane_offset + 4 * lane + i];
    return low | (((high >> (2 * j + half)) & 1) << 4);
  }
  if (!has_6_bits(f)) return low;
  const uint8_t high = qs[high_plane_offset + 64 * (j / 2) + 4 * lane + i];
  return low | (((high >> (4 * (j % 2) + 2 * half)) & 3) << 4);
}

void int_groups_portable(const packed_matrix::impl& w, int64_t group_begin, int64_t group_end,
                         const act_view& act, int64_t num_tokens, float* y) {
  const int_format f = w.format;
  const int64_t qs_block = qs_block_bytes(f);
  const int64_t sc_block = scales_block_bytes(f);
  const int64_t nb = act.num_blocks;
  for (int64_t g = group_begin; g < group_end; ++g) {
    for (int lane = 0; lane < rows_per_group; ++lane) {
      const int64_t row = g * rows_per_group + lane;
      if (row >= w.num_rows) break;
      for (int64_t t = 0; t < num_tokens; ++t) {
        const int8_t* aq = act.q + t * act.num_cols;
        float acc = 0.0f;
        for (int64_t b = 0; b < w.num_blocks; ++b) {
          const uint8_t* qs = w.qs.get() + g * w.qs_group_stride() + b * qs_block;
          const uint8_t* sc = w.scales.get() + g * w.scales_group_stride() + b * sc_block;
          int32_t dot[2] = {0, 0};
          for (int k = 0; k < 32; ++k) dot[k / 16] += unsigned_value(f, qs, lane, k) * aq[32 * b + k];
          const float da = act.d[t * nb + b];
          if (!is_k(f)) {
            const float d = load_f16(sc, lane);
            const float m = has_stored_min(f) ? load_f16(sc, rows_per_group + lane) : w.min_factor * d;
            acc += static_cast<float>(dot[0] + dot[1]) * (d * da);
            acc += m * (uses_q8_1_sum(f) ? act.s : act.s_exact)[t * nb + b];
            continue;
          }
          const uint8_t* sup =
              w.super_scales.get() + g * w.super_group_stride() + b / blocks_per_super * super_bytes(f);
          const float super_d = load_f16(sup, lane);
          if (has_half_scales(f)) {
            const int32_t sum_lo = act.sum_lo[t * nb + b];
            const int32_t half_sums[2] = {sum_lo, act.sum[t * nb + b] - sum_lo};
            for (int h = 0; h < 2; ++h) {
              const float d = super_d * static_cast<float>(static_cast<int8_t>(sc[rows_per_group * h + lane]));
              acc += static_cast<float>(dot[h] - 32 * half_sums[h]) * (d * da);
            }
          } else {
            const float d = super_d * static_cast<float>(sc[lane]);
            const float m = -load_f16(sup, rows_per_group + lane) * static_cast<float>(sc[rows_per_group + lane]);
            acc += static_cast<float>(dot[0] + dot[1]) * (d * da);
            acc += m * act.s_exact[t * nb + b];
          }
        }
        y[t * w.num_rows + row] = acc;
      }
    }
  }
}

void float_rows_portable(const packed_matrix::impl& w, int64_t row_begin, int64_t row_end, const float* x,
                         int64_t num_tokens, float* y) {
  float* row_values = thread_scratch_floats(static_cast<size_t>(w.num_cols));
  for (int64_t row = row_begin; row < row_end; ++row) {
    float_row(w, row, row_values);
    for (int64_t t = 0; t < num_tokens; ++t) {
      const float* xt = x + t * w.num_cols;
      float acc = 0.0f;
      for (int64_t k = 0; k < w.num_cols; ++k) acc += row_values[k] * xt[k];
      y[t * w.num_rows + row] = acc;
    }
  }
}

}  // namespace

const kernel_table& portable_kernels() {
  static const kernel_table table{quantize_portable, int_groups_portable, float_rows_portable};
  return table;
}

}  // namespace troupe::cpu::detail
