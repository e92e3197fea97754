// The CPU backend's paged KV memory: for every layer, K and V of num_blocks blocks of
// block_size positions, each position kv_dim fp16 values. Block ids come from the block
// manager; this class only stores and addresses them.
//
// Values are stored position by position (a position's kv_dim values together), the order
// attention weights them in. Keys are stored dimension by dimension within a block (one
// dimension of every position of the block together): attention takes a query's dot
// product with many keys at once, and that layout gives it one dimension of 16 keys in
// one load, without a transpose.
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

  // The keys of one block of a layer, dimension-major: dimension c of the position at
  // offset o is at [c * block_size() + o].
  uint16_t* key_block(int32_t layer, int32_t block) { return data_.get() + index(layer, 0, block, 0); }
  const uint16_t* key_block(int32_t layer, int32_t block) const { return data_.get() + index(layer, 0, block, 0); }
  uint16_t key_at(int32_t layer, int32_t block, int32_t offset, int32_t c) const {
    return key_block(layer, block)[(int64_t)c * block_size_ + offset];
  }
  // Writes the kv_dim keys of one position, rounded to fp16.
  void store_key(int32_t layer, int32_t block, int32_t offset, const float* k);
  // The kv_dim values of one position (block, offset within block) of a layer.
  uint16_t* value(int32_t layer, int32_t block, int32_t offset) { return data_.get() + index(layer, 1, block, offset); }
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
