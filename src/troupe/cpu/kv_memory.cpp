#include "troupe/cpu/kv_memory.hpp"

#include <cstring>
#include <string>

#include "troupe/cpu/kv_quant.hpp"
#include "troupe/cpu/layer_ops.hpp"
#include "troupe/model/error.hpp"
#include "troupe/model/quant.hpp"

namespace troupe::cpu {

kv_memory::kv_memory(int32_t num_layers, int32_t num_blocks, int32_t block_size, int32_t kv_dim,
                     kv_cache_dtype dtype)
    : num_layers_(num_layers),
      num_blocks_(num_blocks),
      block_size_(block_size),
      kv_dim_(kv_dim),
      dtype_(dtype),
      row_bytes_(kv_row_bytes(dtype, kv_dim)) {
  if (kv_dim % kv_values_per_block(dtype) != 0) {
    throw error(error_code::unsupported, "--kv-cache-dtype " + std::string(name_of(dtype)) +
                                             " needs K/V rows (kv heads x head_dim = " + std::to_string(kv_dim) +
                                             ") in whole blocks of 32 values; use f16");
  }
  const int64_t n = (int64_t)num_layers * 2 * num_blocks * block_size * row_bytes_;
  // Not value-initialised: pages are touched only when a block is first written. Quantized
  // rows are even-sized too (blocks of 34 or 18 bytes), so 2-byte units hold any dtype.
  data_.reset(new uint16_t[static_cast<size_t>(n / 2)]);
}

void kv_memory::copy_block_to(kv_memory& to, int32_t src, int32_t dst) const {
  const size_t block_bytes = static_cast<size_t>(block_size_) * row_bytes_;
  for (int32_t layer = 0; layer < num_layers_; ++layer) {
    for (int32_t kv = 0; kv < 2; ++kv) {
      std::memcpy(to.bytes() + to.index(layer, kv, dst, 0), bytes() + index(layer, kv, src, 0), block_bytes);
    }
  }
}

void kv_memory::store_key(int32_t layer, int32_t block, int32_t offset, const float* k) {
  if (dtype_ != kv_cache_dtype::f16) {
    quantize_kv_row(dtype_, k, kv_dim_, bytes() + index(layer, 0, block, offset));
    return;
  }
  uint16_t* out = key_block(layer, block) + offset;
  for (int32_t c = 0; c < kv_dim_; ++c) out[(int64_t)c * block_size_] = fp32_to_fp16(k[c]);
}

void kv_memory::store_value(int32_t layer, int32_t block, int32_t offset, const float* v) {
  if (dtype_ != kv_cache_dtype::f16) {
    quantize_kv_row(dtype_, v, kv_dim_, bytes() + index(layer, 1, block, offset));
    return;
  }
  store_fp16(v, value(layer, block, offset), kv_dim_);
}

}  // namespace troupe::cpu
