// packed_matrix: repacks GGUF weight rows once at load time into the interleaved layout the
// integer kernels stream (see packed_layout.hpp), or keeps float-path rows as stored.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "troupe/cpu/packed_layout.hpp"
#include "troupe/cpu/quantize_activations.hpp"
#include "troupe/model/error.hpp"

namespace troupe::cpu {
namespace detail {

aligned_bytes allocate_aligned(size_t num_bytes) {
  // Large matrices go on 2 MiB pages where the kernel allows it (THP in madvise mode): a
  // decode step streams ~100 MB of weights, and 4 KiB pages would cost a TLB walk per page.
  constexpr size_t huge_page = size_t{2} << 20;
  const bool is_large = num_bytes >= huge_page;
  const size_t alignment = is_large ? huge_page : 64;
  const size_t rounded = std::max<size_t>(alignment, (num_bytes + alignment - 1) / alignment * alignment);
  void* p = std::aligned_alloc(alignment, rounded);
  if (p == nullptr) throw std::bad_alloc();
#if defined(__linux__)
  if (alignment == huge_page) (void)madvise(p, rounded, MADV_HUGEPAGE);
#endif
  std::memset(p, 0, rounded);
  return aligned_bytes(static_cast<uint8_t*>(p));
}

void float_row(const packed_matrix::impl& w, int64_t row, float* out) {
  const uint8_t* src = w.raw.get() + static_cast<size_t>(row) * w.raw_row_bytes;
  dequantize_row(w.type, src, out, w.num_cols);
}

float* thread_scratch_floats(size_t num_floats) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < num_floats) buffer.resize(num_floats);
  return buffer.data();
}

}  // namespace detail

namespace {

using detail::int_format;

// One block of 32 weights as unsigned values with w = d*u + m.
struct unsigned_block {
  uint8_t u[32];
  float d;
  float m;
};

unsigned_block unpack_block(ggml_type type, const uint8_t* row, int64_t b) {
  unsigned_block out{};
  switch (type) {
    case ggml_type::q4_0: {
      block_q4_0 blk;
      std::memcpy(&blk, row + b * sizeof blk, sizeof blk);
      for (int j = 0; j < 16; ++j) { out.u[j] = blk.qs[j] & 15; out.u[j + 16] = blk.qs[j] >> 4; }
      out.d = fp16_to_fp32(blk.d);
      return out;
    }
    case ggml_type::q4_1: {
      block_q4_1 blk;
      std::memcpy(&blk, row + b * sizeof blk, sizeof blk);
      for (int j = 0; j < 16; ++j) { out.u[j] = blk.qs[j] & 15; out.u[j + 16] = blk.qs[j] >> 4; }
      out.d = fp16_to_fp32(blk.d);
      out.m = fp16_to_fp32(blk.m);
      return out;
    }
    case ggml_type::q5_0:
    case ggml_type::q5_1: {
      const bool has_min = type == ggml_type::q5_1;
      const size_t size = has_min ? sizeof(block_q5_1) : sizeof(block_q5_0);
      const uint8_t* p = row + b * size;
      const uint8_t* qh = p + (has_min ? 4 : 2);
      const uint8_t* qs = qh + 4;
      const uint32_t high = load_le_u32(qh);
      for (int j = 0; j < 16; ++j) {
        out.u[j] = static_cast<uint8_t>((qs[j] & 15) | (((high >> j) & 1u) << 4));
        out.u[j + 16] = static_cast<uint8_t>((qs[j] >> 4) | (((high >> (j + 16)) & 1u) << 4));
      }
      uint16_t h;
      std::memcpy(&h, p, 2);
      out.d = fp16_to_fp32(h);
      if (has_min) { std::memcpy(&h, p + 2, 2); out.m = fp16_to_fp32(h); }
      return out;
    }
    case ggml_type::q8_0: {
      block_q8_0 blk;
      std::memcpy(&blk, row + b * sizeof blk, sizeof blk);
      for (int j = 0; j < 32; ++j) out.u[j] = static_cast<uint8_t>(blk.qs[j] + 128);
      out.d = fp16_to_fp32(blk.d);
      return out;
    }
    case ggml_type::q4_k: {
      block_q4_k blk;
      std::memcpy(&blk, row + (b / 8) * sizeof blk, sizeof blk);
      const int sub = static_cast<int>(b % 8);
      int sc, mn;
      q4_k_scale_min(blk.scales, sub, sc, mn);
      const uint8_t* qs = blk.qs + 32 * (sub / 2);
      for (int j = 0; j < 32; ++j) out.u[j] = (sub % 2 == 0) ? (qs[j] & 15) : (qs[j] >> 4);
      // Exact in fp32: an 11-bit mantissa times a 6-bit integer.
      out.d = fp16_to_fp32(blk.d) * static_cast<float>(sc);
      out.m = -fp16_to_fp32(blk.dmin) * static_cast<float>(mn);
      return out;
    }
    default:
      throw error(error_code::internal, "unpack_block: not an integer-path type");
  }
}

struct int_choice {
  int_format format;
  float min_factor;
};

int_choice choose_format(ggml_type type) {
  switch (type) {
    case ggml_type::q4_0: return {int_format::nib_f16_sym, -8.0f};
    case ggml_type::q4_1: return {int_format::nib_f16_min, 0.0f};
    case ggml_type::q5_0: return {int_format::byte_f16_sym, -16.0f};
    case ggml_type::q5_1: return {int_format::byte_f16_min, 0.0f};
    case ggml_type::q8_0: return {int_format::byte_f16_sym, -128.0f};
    case ggml_type::q4_k: return {int_format::nib_f32_min, 0.0f};
    default: throw error(error_code::internal, "choose_format: not an integer-path type");
  }
}

void store_scale(uint8_t* p, int64_t index, float value, bool is_f32) {
  if (is_f32) {
    std::memcpy(p + 4 * index, &value, 4);
  } else {
    const uint16_t h = fp32_to_fp16(value);  // exact: the value came from an fp16
    std::memcpy(p + 2 * index, &h, 2);
  }
}

void pack_int(packed_matrix::impl& m, const uint8_t* data, size_t row_size) {
  const auto [format, min_factor] = choose_format(m.type);
  m.format = format;
  m.min_factor = min_factor;
  m.num_blocks = m.num_cols / detail::block_cols;
  m.num_groups = (m.num_rows + detail::rows_per_group - 1) / detail::rows_per_group;
  const size_t qs_bytes = static_cast<size_t>(m.num_groups * m.qs_group_stride());
  const size_t scales_bytes = static_cast<size_t>(m.num_groups * m.scales_group_stride());
  m.qs = detail::allocate_aligned(qs_bytes);
  m.scales = detail::allocate_aligned(scales_bytes);
  m.num_bytes = qs_bytes + scales_bytes;

  const bool nib = detail::is_nib(format);
  const bool f32 = detail::has_f32_scales(format);
  const bool stored_min = detail::has_stored_min(format);
  const int64_t qs_block = detail::qs_block_bytes(format);
  const int64_t sc_block = detail::scales_block_bytes(format);
  for (int64_t row = 0; row < m.num_rows; ++row) {
    const int64_t g = row / detail::rows_per_group;
    const int64_t lane = row % detail::rows_per_group;
    const uint8_t* src = data + static_cast<size_t>(row) * row_size;
    for (int64_t b = 0; b < m.num_blocks; ++b) {
      const unsigned_block blk = unpack_block(m.type, src, b);
      uint8_t* qs = m.qs.get() + g * m.qs_group_stride() + b * qs_block;
      if (nib) {
        for (int j = 0; j < 4; ++j)
          for (int i = 0; i < 4; ++i)
            qs[64 * j + 4 * lane + i] = static_cast<uint8_t>(blk.u[4 * j + i] | (blk.u[16 + 4 * j + i] << 4));
      } else {
        for (int j = 0; j < 8; ++j)
          for (int i = 0; i < 4; ++i) qs[64 * j + 4 * lane + i] = blk.u[4 * j + i];
      }
      uint8_t* sc = m.scales.get() + g * m.scales_group_stride() + b * sc_block;
      store_scale(sc, lane, blk.d, f32);
      if (stored_min) store_scale(sc, detail::rows_per_group + lane, blk.m, f32);
    }
  }
}

}  // namespace

packed_matrix packed_matrix::pack(ggml_type type, const void* data, int64_t num_rows, int64_t num_cols) {
  const auto traits = traits_of(static_cast<uint32_t>(type));
  const bool is_int = uses_quantized_activations(type);
  const bool is_float = type == ggml_type::f32 || type == ggml_type::f16 || type == ggml_type::bf16 ||
                        type == ggml_type::q6_k;
  if (!traits || (!is_int && !is_float))
    throw error(error_code::unsupported,
                "no CPU matmul kernel for tensor type " +
                    (traits ? std::string(traits->name) : std::to_string(static_cast<uint32_t>(type))));
  if (data == nullptr || num_rows <= 0 || num_cols <= 0)
    throw error(error_code::invalid_argument, "packed_matrix::pack: empty matrix or null data");
  const auto row_size = row_bytes(type, num_cols);
  if (!row_size || (is_int && num_cols % detail::block_cols != 0))
    throw error(error_code::invalid_argument,
                "packed_matrix::pack: " + std::to_string(num_cols) + " columns is not a whole number of " +
                    std::string(traits->name) + " blocks");

  packed_matrix out;
  impl& m = *out.impl_;
  m.type = type;
  m.num_rows = num_rows;
  m.num_cols = num_cols;
  m.is_int = is_int;
  const auto* bytes = static_cast<const uint8_t*>(data);
  if (is_int) {
    pack_int(m, bytes, static_cast<size_t>(*row_size));
  } else {
    m.raw_row_bytes = static_cast<size_t>(*row_size);
    m.num_bytes = m.raw_row_bytes * static_cast<size_t>(num_rows);
    m.raw = detail::allocate_aligned(m.num_bytes);
    std::memcpy(m.raw.get(), bytes, m.num_bytes);
  }
  return out;
}

packed_matrix::packed_matrix() : impl_(std::make_unique<impl>()) {}
packed_matrix::packed_matrix(packed_matrix&&) noexcept = default;
packed_matrix& packed_matrix::operator=(packed_matrix&&) noexcept = default;
packed_matrix::~packed_matrix() = default;

int64_t packed_matrix::num_rows() const { return impl_->num_rows; }
int64_t packed_matrix::num_cols() const { return impl_->num_cols; }
ggml_type packed_matrix::type() const { return impl_->type; }
size_t packed_matrix::num_bytes() const { return impl_->num_bytes; }

}  // namespace troupe::cpu
