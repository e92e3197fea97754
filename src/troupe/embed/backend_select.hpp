// Picks and builds the backend(s) for `troupe generate`, `troupe serve` and embedding
// hosts: the CPU, one CUDA device, or N tensor-parallel CUDA ranks, from a plain options
// struct, with a one-line description of what was chosen for the log.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "troupe/cpu/cpu_backend.hpp"
#include "troupe/model/backend.hpp"
#include "troupe/model/gguf.hpp"

namespace troupe {

struct backend_choice_options {
  std::string device = "auto";          // auto | cpu | cuda
  std::vector<int> devices;             // CUDA device ids; empty: all visible (auto) or 0 (cuda)
  int32_t tensor_parallel = 1;          // ranks; with devices empty, the first N devices
  double gpu_memory_utilization = 0.9;
  bool cuda_graphs = true;
  int32_t max_num_batched_tokens = 2048;  // sizes the CUDA workspace
  int32_t max_model_len = 0;              // the CUDA pool must hold one such sequence (0: context)
  int32_t num_swap_blocks = 0;            // CUDA pinned swap space
  cpu::cpu_backend_options cpu;           // for the CPU (and its eog_ids for CUDA too)
};

struct backend_choice {
  // One per tensor-parallel rank (one for the CPU or a single device); rank 0 first.
  std::vector<std::shared_ptr<backend>> ranks;
  std::string description;  // "device: cuda:0 NVIDIA H100 ..." / "auto: no CUDA device found, using the CPU"
  bool is_cuda = false;
};

// "0,1" -> {0, 1}; throws troupe::error(invalid_argument) naming --devices.
std::vector<int> parse_device_list(const std::string& text);

// A quantized KV dtype (cpu.kv_dtype) runs on the CPU only: --device auto falls back to the
// CPU with it, --device cuda is refused naming --kv-cache-dtype.
// Throws troupe::error: --device cuda without CUDA or a device, a device id that does not
// exist, tensor_parallel not matching the devices, an unknown --device value.
backend_choice choose_backend(std::shared_ptr<const gguf::file> file, const backend_choice_options& options);

}  // namespace troupe
