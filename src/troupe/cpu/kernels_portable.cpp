// The portable C++ kernels: plain loops over the packed layout. They define the arithmetic
// every wider path reproduces (integer block dot, then d*d_a*dot + m*s_a per block).
#include <cstring>

#include "troupe/cpu/packed_layout.hpp"
#include "troupe/cpu/quantize_activations.hpp"

namespace troupe::cpu::detail {
namespace {

void quantize_portable(const float* x, int64_t num_tokens, int64_t num_cols, int8_t* q, float* d, float* s,
                       float* s_exact, int32_t* sum) {
  const int64_t nb = num_cols / block_cols;
  for (int64_t t = 0; t < num_tokens; ++t)
    quantize_row_q8(x + t * num_cols, num_cols, q + t * num_cols, d + t * nb, s + t * nb, s_exact + t * nb,
                    sum + t * nb);
}

float load_scale(const uint8_t* p, int64_t index, bool is_f32) {
  if (is_f32) {
    float v;
    std::memcpy(&v, p + 4 * index, 4);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, p + 2 * index, 2);
  return fp16_to_fp32(h);
}

int unsigned_value(const uint8_t* qs, bool nib, int lane, int k) {
  if (nib) {
    const uint8_t byte = qs[64 * ((k % 16) / 4) + 4 * lane + k % 4];
    return k < 16 ? (byte & 15) : (byte >> 4);
  }
  return qs[64 * (k / 4) + 4 * lane + k % 4];
}

void int_groups_portable(const packed_matrix::impl& w, int64_t group_begin, int64_t group_end,
                         const act_view& act, int64_t num_tokens, float* y) {
  const bool nib = is_nib(w.format);
  const bool f32 = has_f32_scales(w.format);
  const bool stored_min = has_stored_min(w.format);
  const int64_t qs_block = qs_block_bytes(w.format);
  const int64_t sc_block = scales_block_bytes(w.format);
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
          int32_t dot = 0;
          for (int k = 0; k < 32; ++k) dot += unsigned_value(qs, nib, lane, k) * aq[32 * b + k];
          const float d = load_scale(sc, lane, f32);
          const float m = stored_min ? load_scale(sc, rows_per_group + lane, f32) : w.min_factor * d;
          acc += static_cast<float>(dot) * (d * act.d[t * act.num_blocks + b]);
          acc += m * (uses_q8_1_sum(w.format) ? act.s : act.s_exact)[t * act.num_blocks + b];
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
