#include "troupe/cpu/kv_memory.hpp"

#include <cstring>

#include "troupe/model/quant.hpp"

namespace troupe::cpu {

kv_memory::kv_memory(int32_t num_layers, int32_t num_blocks, int32_t block_size, int32_t kv_dim)
    : num_layers_(num_layers), num_blocks_(num_blocks), block_size_(block_size), kv_dim_(kv_dim) {
  const int64_t n = (int64_t)num_layers * 2 * num_blocks * block_size * kv_dim;
  // Not value-initialised: pages are touched only when a block is first written.
  data_.reset(new uint16_t[static_cast<size_t>(n)]);
}

void kv_memory::copy_block_to(kv_memory& to, int32_t src, int32_t dst) const {
  const size_t block_elems = static_cast<size_t>(block_size_) * kv_dim_;
  for (int32_t layer = 0; layer < num_layers_; ++layer) {
    std::memcpy(to.key_block(layer, dst), key_block(layer, src), block_elems * sizeof(uint16_t));
    std::memcpy(to.value(layer, dst, 0), value(layer, src, 0), block_elems * sizeof(uint16_t));
  }
}

void kv_memory::store_key(int32_t layer, int32_t block, int32_t offset, const float* k) {
  uint16_t* out = key_block(layer, block) + offset;
  for (int32_t c = 0; c < kv_dim_; ++c) out[(int64_t)c * block_size_] = fp32_to_fp16(k[c]);
}

}  // namespace troupe::cpu
