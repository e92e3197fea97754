// The CPU backend's paged KV memory: for every layer, K and V of num_blocks blocks of
// block_size positions, each position kv_dim fp16 values. Block ids come from the block
// manager; this class only stores and addresses them.
#pragma once
#include <cstdint>
#include <memory>

namespace troupe::cpu {

class kv_memory {
 public:
  kv_memory(int32_t num_layers, int32_t num_blocks, int32_t block_size, int32_t kv_dim);

  int32_t num_blocks() const { return num_blocks_; }
  int32_t block_size() const { return block_size_; }
  int32_t kv_dim() const { return kv_dim_; }
  int64_t bytes_per_block() const { return 2LL * num_layers_ * block_size_ * kv_dim_ * 2; }
  int64_t total_bytes() const { return bytes_per_block() * num_blocks_; }

  // The kv_dim values of one position (block, offset within block) of a layer.
  uint16_t* key(int32_t layer, int32_t block, int32_t offset) { return data_.get() + index(layer, 0, block, offset); }
  uint16_t* value(int32_t layer, int32_t block, int32_t offset) { return data_.get() + index(layer, 1, block, offset); }
  const uint16_t* key(int32_t layer, int32_t block, int32_t offset) const { return data_.get() + index(layer, 0, block, offset); }
  const uint16_t* value(int32_t layer, int32_t block, int32_t offset) const { return data_.get() + index(layer, 1, block, offset); }

  // Copies every layer's K and V of block src into block dst.
  void copy_block(int32_t src, int32_t dst) { copy_block_to(*this, src, dst); }
  // The same into another pool of the same geometry (swap space).
  void copy_block_to(kv_memory& to, int32_t src, int32_t dst) const;

 private:
  int64_t index(int32_t layer, int32_t kv, int32_t block, int32_t offset) const {
    return ((((int64_t)layer * 2 + kv) * num_blocks_ + block) * block_size_ + offset) * kv_dim_;
  }

  int32_t num_layers_, num_blocks_, block_size_, kv_dim_;
  std::unique_ptr<uint16_t[]> data_;
};

}  // namespace troupe::cpu
