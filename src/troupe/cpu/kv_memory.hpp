// The CPU backend's paged KV memory: for every layer, K and V of num_blocks blocks of
// block_size positions, each position kv_dim values, stored as fp16 or quantized
// (kv_cache_dtype). Block ids come from the block manager; this class only stores and
// addresses them.
//
// fp16: values are stored position by position (a position's kv_dim values together), the
// order attention weights them in. Keys are stored dimension by dimension within a block
// (one dimension of every position of the block together): attention takes a query's dot
// product with many keys at once, and that layout gives it one dimension of 16 keys in
// one load, without a transpose.
//
// q8_0 / q4_0: keys and values are both stored position by position, each position's
// kv_dim values as kv_dim / 32 blocks of llama.cpp's Q8_0 / Q4_0 (block_q8_0, block_q4_0),
// so a head's blocks lie together and attention reads them in place.
#pragma once
#include <cstdint>
#include <memory>

#include "troupe/model/kv_cache_dtype.hpp"

namespace troupe::cpu {

class kv_memory {
 public:
  // kv_dim must be a multiple of 32 for the quantized dtypes (throws troupe::error).
  kv_memory(int32_t num_layers, int32_t num_blocks, int32_t block_size, int32_t kv_dim,
            kv_cache_dtype dtype = kv_cache_dtype::f16);

  int32_t num_blocks() const { return num_blocks_; }
  int32_t block_size() const { return block_size_; }
  int32_t kv_dim() const { return kv_dim_; }
  kv_cache_dtype dtype() const { return dtype_; }
  // Bytes of one position's K (or V) in one layer.
  int64_t row_bytes() const { return row_bytes_; }
  int64_t bytes_per_block() const { return 2LL * num_layers_ * block_size_ * row_bytes_; }
  int64_t total_bytes() const { return bytes_per_block() * num_blocks_; }

  // fp16 only. The keys of one block of a layer, dimension-major: dimension c of the
  // position at offset o is at [c * block_size() + o].
  uint16_t* key_block(int32_t layer, int32_t block) { return as_fp16(index(layer, 0, block, 0)); }
  const uint16_t* key_block(int32_t layer, int32_t block) const { return as_fp16(index(layer, 0, block, 0)); }
  uint16_t key_at(int32_t layer, int32_t block, int32_t offset, int32_t c) const {
    return key_block(layer, block)[(int64_t)c * block_size_ + offset];
  }
  // fp16 only. The kv_dim values of one position (block, offset within block) of a layer.
  uint16_t* value(int32_t layer, int32_t block, int32_t offset) { return as_fp16(index(layer, 1, block, offset)); }
  const uint16_t* value(int32_t layer, int32_t block, int32_t offset) const {
    return as_fp16(index(layer, 1, block, offset));
  }

  // Quantized dtypes only. One position's K (kv = 0) or V (kv = 1): row_bytes() bytes,
  // kv_dim / 32 blocks of the dtype.
  const uint8_t* quantized_row(int32_t layer, int32_t kv, int32_t block, int32_t offset) const {
    return bytes() + index(layer, kv, block, offset);
  }

  // Writes the kv_dim keys (values) of one position, rounded to fp16 or quantized.
  void store_key(int32_t layer, int32_t block, int32_t offset, const float* k);
  void store_value(int32_t layer, int32_t block, int32_t offset, const float* v);

  // Copies every layer's K and V of block src into block dst.
  void copy_block(int32_t src, int32_t dst) { copy_block_to(*this, src, dst); }
  // The same into another pool of the same geometry and dtype (swap space).
  void copy_block_to(kv_memory& to, int32_t src, int32_t dst) const;

 private:
  // Byte offset of a position's row; for fp16 keys, of the block's dimension-major keys.
  int64_t index(int32_t layer, int32_t kv, int32_t block, int32_t offset) const {
    return ((((int64_t)layer * 2 + kv) * num_blocks_ + block) * block_size_ + offset) * row_bytes_;
  }
  // fp16 rows are even byte offsets into 2-byte storage.
  uint16_t* as_fp16(int64_t byte_offset) { return data_.get() + byte_offset / 2; }
  const uint16_t* as_fp16(int64_t byte_offset) const { return data_.get() + byte_offset / 2; }
  uint8_t* bytes() { return reinterpret_cast<uint8_t*>(data_.get()); }
  const uint8_t* bytes() const { return reinterpret_cast<const uint8_t*>(data_.get()); }

  int32_t num_layers_, num_blocks_, block_size_, kv_dim_;
  kv_cache_dtype dtype_;
  int64_t row_bytes_;
  std::unique_ptr<uint16_t[]> data_;
};

}  // namespace troupe::cpu
