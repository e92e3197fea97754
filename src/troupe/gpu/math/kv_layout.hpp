// Where a KV position lives in the CUDA backend's pool: block-major, so one block (every
// layer's K and V of block_size positions) is one contiguous span that a swap or a
// copy-on-write moves with a single copy. Shared by the kernels and the host code.
#pragma once
#include <cstdint>

#include "troupe/model/hd.hpp"

namespace troupe::gpu {

struct kv_layout {
  int32_t num_layers = 0;
  int32_t block_size = 0;
  int32_t kv_dim = 0;  // kv values per position on this device (a rank's share under TP)

  // fp16 values in one block.
  TROUPE_HD int64_t block_elements() const { return 2LL * num_layers * block_size * kv_dim; }
  TROUPE_HD int64_t block_bytes() const { return block_elements() * 2; }
  // First value of position `offset` of `block`, layer, K (kv = 0) or V (kv = 1).
  TROUPE_HD int64_t index(int32_t block, int32_t layer, int32_t kv, int32_t offset) const {
    return (((int64_t)block * num_layers + layer) * 2 + kv) * block_size * kv_dim + (int64_t)offset * kv_dim;
  }
  // The same for a sequence position, found through its block table.
  TROUPE_HD int64_t index_at(const int32_t* block_table, int32_t layer, int32_t kv, int32_t pos) const {
    return index(block_table[pos / block_size], layer, kv, pos % block_size);
  }
};

}  // namespace troupe::gpu
