// The CUDA backend's public face, free of CUDA headers so that apps and tests include it
// whether or not troupe was built with CUDA. Without CUDA, num_cuda_devices() is 0 and the
// factories throw troupe::error(unsupported).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "troupe/model/backend.hpp"
#include "troupe/model/gguf.hpp"

namespace troupe::gpu {

struct cuda_backend_options {
  std::vector<int> devices;             // one per tensor-parallel rank; empty: device 0
  int32_t block_size = 16;              // KV positions per block
  double gpu_memory_utilization = 0.9;  // share of the memory free after weights and workspace
  int32_t num_blocks = 0;               // > 0: cap the KV pool at this many blocks
  int32_t num_swap_blocks = 0;          // pinned host swap space, in blocks
  int32_t max_num_batched_tokens = 2048;  // tokens one step may feed: sizes the workspace
  int32_t max_model_len = 0;            // 0: the model's context; the pool must hold one such sequence
  bool cuda_graphs = false;             // replay decode steps (<= 256 sequences) as CUDA graphs
  // Keep an fp16 copy of every matrix for steps of more than 8 tokens (cuBLAS reads it, no
  // per-step dequantization), when the copies take at most this share of device memory;
  // 0 = never.
  double fp16_weight_share = 0.25;
  std::vector<int32_t> eog_ids;         // suppressed by ignore_eos
};

// CUDA devices visible to this process; 0 without a driver, a device or CUDA support.
int num_cuda_devices();
// "NVIDIA H100 80GB HBM3, 79.1 GiB, sm_90"; empty when the device does not exist.
std::string cuda_device_description(int device);
bool built_with_cuda();

// One backend per rank (options.devices); ranks of more than one all-reduce through NCCL,
// must all be stepped with the same plan at the same time (actors/worker_group), and share
// one KV block count. Throws troupe::error naming the knob when the model or the KV cache
// does not fit.
std::vector<std::shared_ptr<backend>> make_cuda_backends(std::shared_ptr<const gguf::file> file,
                                                         const cuda_backend_options& options);
// The single-device case (options.devices holds at most one device).
std::shared_ptr<backend> make_cuda_backend(std::shared_ptr<const gguf::file> file, const cuda_backend_options& options);

}  // namespace troupe::gpu
