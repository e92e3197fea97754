// Internal to the CUDA backend's host code: error checks, owning device/pinned buffers, the
// two streams with their events (the device_ops that step_order drives), weights on the
// device, and the NCCL group. Needs the CUDA runtime header; never included by apps.
#pragma once
#include <cuda_runtime_api.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "troupe/gpu/cuda_backend.hpp"
#include "troupe/gpu/kernels.hpp"
#include "troupe/gpu/step_order.hpp"
#include "troupe/model/gguf.hpp"
#include "troupe/model/model_config.hpp"

namespace troupe::gpu {

// Throws troupe::error(internal) naming the call when a CUDA call fails.
void check_cuda(cudaError_t result, const char* what);

// cudaMalloc'd memory, freed on destruction.
class device_buffer {
 public:
  device_buffer() = default;
  explicit device_buffer(size_t bytes, const char* what = "device memory");
  device_buffer(device_buffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr; o.bytes_ = 0; }
  device_buffer& operator=(device_buffer&& o) noexcept;
  ~device_buffer();
  template <class T> T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// A device array that grows on demand and is filled from a host vector on a stream.
template <class T>
class device_array {
 public:
  T* upload(const std::vector<T>& host, cudaStream_t stream) {
    if (host.empty()) return data();
    if (host.size() * sizeof(T) > buffer_.bytes()) buffer_ = device_buffer(host.size() * 2 * sizeof(T), "step inputs");
    check_cuda(cudaMemcpyAsync(buffer_.as<T>(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice, stream),
               "upload step inputs");
    return data();
  }
  void reserve(size_t n) {
    if (n * sizeof(T) > buffer_.bytes()) buffer_ = device_buffer(n * sizeof(T), "step buffers");
  }
  T* data() const { return buffer_.as<T>(); }

 private:
  device_buffer buffer_;
};

// cudaHostAlloc'd (pinned) memory: the swap space, so swaps are true asynchronous DMA.
class pinned_buffer {
 public:
  pinned_buffer() = default;
  explicit pinned_buffer(size_t bytes);
  pinned_buffer(const pinned_buffer&) = delete;
  pinned_buffer& operator=(const pinned_buffer&) = delete;
  ~pinned_buffer();
  template <class T> T* as() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_ = nullptr;
};

// The compute and copy streams and the events between them, as step_order's device_ops.
class cuda_streams final : public device_ops {
 public:
  cuda_streams();
  ~cuda_streams() override;
  cudaStream_t compute() const { return compute_; }
  cudaStream_t copy() const { return copy_; }
  // Where swaps and block copies act.
  void bind(uint16_t* pool, uint16_t* swap, int64_t block_elements);

  void swap_block_out(int32_t device_block, int32_t host_block) override;
  void swap_block_in(int32_t host_block, int32_t device_block) override;
  void copy_blocks(const std::vector<std::pair<int32_t, int32_t>>& pairs) override;
  void record(stream_kind stream, event_kind event) override;
  void wait(stream_kind stream, event_kind event) override;

 private:
  cudaStream_t of(stream_kind s) const { return s == stream_kind::compute ? compute_ : copy_; }
  cudaStream_t compute_ = nullptr, copy_ = nullptr;
  std::array<cudaEvent_t, 4> events_{};
  uint16_t* pool_ = nullptr;
  uint16_t* swap_ = nullptr;
  int64_t block_elements_ = 0;
  device_array<int32_t> pairs_;
};

// One layer's weights on the device (this rank's shard).
struct layer_on_device {
  const float* attn_norm = nullptr;
  const float* ffn_norm = nullptr;
  device_matrix wq, wk, wv, wo, w_gate, w_up, w_down;
};

// Every weight of the model on one device, sharded for rank `rank` of num_ranks.
struct weights_on_device {
  std::vector<device_buffer> buffers;  // owns everything below
  device_matrix token_embd, output;
  const float* output_norm = nullptr;
  std::vector<layer_on_device> layers;
  int64_t bytes = 0;
  int64_t largest_matrix_elements = 0;  // sizes the fp16 dequantization scratch
};
weights_on_device upload_weights(const gguf::file& file, const model_config& config, int32_t rank,
                                 int32_t num_ranks);

// NCCL communicators for a set of devices in this process (ncclCommInitAll).
class nccl_group {
 public:
  explicit nccl_group(const std::vector<int>& devices);
  ~nccl_group();
  nccl_group(const nccl_group&) = delete;
  nccl_group& operator=(const nccl_group&) = delete;
  // In-place sum over all ranks; every rank must call it with the same count.
  void all_reduce_sum(int32_t rank, float* data, size_t count, cudaStream_t stream);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe::gpu
