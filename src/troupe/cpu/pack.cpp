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

// One block of 32 weights as unsigned values: w = d*u + m for classic formats; for K
// formats the two sub-block bytes and the super-block's D and DMIN (see packed_layout.hpp).
struct unsigned_block {
  uint8_t u[32];
  float d = 0.0f;
  float m = 0.0f;
  uint8_t sub[2] = {0, 0};
  float super_d = 0.0f;
  float super_min = 0.0f;
};

uint16_t load_u16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}

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
      out.d = fp16_to_fp32(load_u16(p));
      if (has_min) out.m = fp16_to_fp32(load_u16(p + 2));
      return out;
    }
    case ggml_type::q8_0: {
      block_q8_0 blk;
      std::memcpy(&blk, row + b * sizeof blk, sizeof blk);
      for (int j = 0; j < 32; ++j) out.u[j] = static_cast<uint8_t>(blk.qs[j] + 128);
      out.d = fp16_to_fp32(blk.d);
      return out;
    }
    case ggml_type::q4_k:
    case ggml_type::q5_k: {
      // The nibbles, scales and mins sit at the same offsets in both; Q5_K adds qh.
      const bool has_high = type == ggml_type::q5_k;
      const uint8_t* p = row + (b / 8) * (has_high ? sizeof(block_q5_k) : sizeof(block_q4_k));
      const uint8_t* scales = p + 4;
      const uint8_t* qh = p + 16;
      const uint8_t* qs = p + (has_high ? 48 : 16);
      const int sub = static_cast<int>(b % 8);
      int sc, mn;
      q4_k_scale_min(scales, sub, sc, mn);
      const uint8_t* nibbles = qs + 32 * (sub / 2);
      for (int j = 0; j < 32; ++j) {
        const int low = (sub % 2 == 0) ? (nibbles[j] & 15) : (nibbles[j] >> 4);
        const int high = has_high ? ((qh[j] >> sub) & 1) : 0;
        out.u[j] = static_cast<uint8_t>(low | (high << 4));
      }
      out.sub[0] = static_cast<uint8_t>(sc);
      out.sub[1] = static_cast<uint8_t>(mn);
      out.super_d = fp16_to_fp32(load_u16(p));
      out.super_min = fp16_to_fp32(load_u16(p + 2));
      return out;
    }
    case ggml_type::q6_k: {
      block_q6_k blk;
      std::memcpy(&blk, row + (b / 8) * sizeof blk, sizeof blk);
      // Value v of the super-block: half n = v/128, quarter c = (v%128)/32, l = v%32.
      const int sub = static_cast<int>(b % 8);
      const int n = sub / 4, c = sub % 4;
      const uint8_t* ql = blk.ql + 64 * n + 32 * (c % 2);
      const uint8_t* qh = blk.qh + 32 * n;
      for (int l = 0; l < 32; ++l) {
        const int low = c < 2 ? (ql[l] & 15) : (ql[l] >> 4);
        out.u[l] = static_cast<uint8_t>(low | (((qh[l] >> (2 * c)) & 3) << 4));
      }
      out.sub[0] = static_cast<uint8_t>(blk.scales[2 * sub]);
      out.sub[1] = static_cast<uint8_t>(blk.scales[2 * sub + 1]);
      out.super_d = fp16_to_fp32(blk.d);
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
    case ggml_type::q5_0: return {int_format::nib5_f16_sym, -16.0f};
    case ggml_type::q5_1: return {int_format::byte_f16_min, 0.0f};
    case ggml_type::q8_0: return {int_format::byte_f16_sym, -128.0f};
    case ggml_type::q4_k: return {int_format::nib_k_min, 0.0f};
    case ggml_type::q5_k: return {int_format::nib5_k_min, 0.0f};
    case ggml_type::q6_k: return {int_format::nib6_k_half, -32.0f};
    default: throw error(error_code::internal, "choose_format: not an integer-path type");
  }
}

void store_fp16(uint8_t* p, int64_t index, float value) {
  const uint16_t h = fp32_to_fp16(value);  // exact: the value came from an fp16
  std::memcpy(p + 2 * index, &h, 2);
}

// Writes one row's block into lane `lane` of its group's qs (see packed_layout.hpp).
void store_values(int_format format, const uint8_t* u, int64_t lane, uint8_t* qs) {
  if (detail::is_byte(format)) {
    for (int j = 0; j < 8; ++j)
      for (int i = 0; i < 4; ++i) qs[64 * j + 4 * lane + i] = u[4 * j + i];
    return;
  }
  for (int j = 0; j < 4; ++j)
    for (int i = 0; i < 4; ++i)
      qs[64 * j + 4 * lane + i] = static_cast<uint8_t>((u[4 * j + i] & 15) | ((u[16 + 4 * j + i] & 15) << 4));
  uint8_t* high = qs + detail::high_plane_offset;
  if (detail::has_5_bits(format)) {
    for (int i = 0; i < 4; ++i) {
      int bits = 0;
      for (int j = 0; j < 4; ++j)
        for (int h = 0; h < 2; ++h) bits |= ((u[16 * h + 4 * j + i] >> 4) & 1) << (2 * j + h);
      high[4 * lane + i] = static_cast<uint8_t>(bits);
    }
  } else if (detail::has_6_bits(format)) {
    for (int a = 0; a < 2; ++a)
      for (int i = 0; i < 4; ++i) {
        int bits = 0;
        for (int e = 0; e < 2; ++e) {
          const int j = 2 * a + e;
          bits |= (u[4 * j + i] >> 4) << (4 * e);
          bits |= (u[16 + 4 * j + i] >> 4) << (4 * e + 2);
        }
        high[64 * a + 4 * lane + i] = static_cast<uint8_t>(bits);
      }
  }
}

void pack_int(packed_matrix::impl& m, const uint8_t* data, size_t row_size) {
  const auto [format, min_factor] = choose_format(m.type);
  m.format = format;
  m.min_factor = min_factor;
  m.num_blocks = m.num_cols / detail::block_cols;
  m.num_groups = (m.num_rows + detail::rows_per_group - 1) / detail::rows_per_group;
  const bool is_k = detail::is_k(format);
  const size_t qs_bytes = static_cast<size_t>(m.num_groups * m.qs_group_stride());
  const size_t scales_bytes = static_cast<size_t>(m.num_groups * m.scales_group_stride());
  const size_t super_bytes = is_k ? static_cast<size_t>(m.num_groups * m.super_group_stride()) : 0;
  m.qs = detail::allocate_aligned(qs_bytes);
  m.scales = detail::allocate_aligned(scales_bytes);
  if (is_k) m.super_scales = detail::allocate_aligned(super_bytes);
  m.num_bytes = qs_bytes + scales_bytes + super_bytes;

  const bool stored_min = detail::has_stored_min(format);
  const int64_t qs_block = detail::qs_block_bytes(format);
  const int64_t sc_block = detail::scales_block_bytes(format);
  for (int64_t row = 0; row < m.num_rows; ++row) {
    const int64_t g = row / detail::rows_per_group;
    const int64_t lane = row % detail::rows_per_group;
    const uint8_t* src = data + static_cast<size_t>(row) * row_size;
    for (int64_t b = 0; b < m.num_blocks; ++b) {
      const unsigned_block blk = unpack_block(m.type, src, b);
      store_values(format, blk.u, lane, m.qs.get() + g * m.qs_group_stride() + b * qs_block);
      uint8_t* sc = m.scales.get() + g * m.scales_group_stride() + b * sc_block;
      if (is_k) {
        sc[lane] = blk.sub[0];
        sc[detail::rows_per_group + lane] = blk.sub[1];
        if (b % detail::blocks_per_super == 0) {
          uint8_t* sup = m.super_scales.get() + g * m.super_group_stride() +
                         b / detail::blocks_per_super * detail::super_bytes(m.format);
          store_fp16(sup, lane, blk.super_d);
          if (!detail::has_half_scales(m.format)) store_fp16(sup, detail::rows_per_group + lane, blk.super_min);
        }
      } else {
        store_fp16(sc, lane, blk.d);
        if (stored_min) store_fp16(sc, detail::rows_per_group + lane, blk.m);
      }
    }
  }
}

}  // namespace

packed_matrix packed_matrix::pack(ggml_type type, const void* data, int64_t num_rows, int64_t num_cols) {
  const auto traits = traits_of(static_cast<uint32_t>(type));
  const bool is_int = uses_quantized_activations(type);
  const bool is_float = type == ggml_type::f32 || type == ggml_type::f16 || type == ggml_type::bf16;
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
