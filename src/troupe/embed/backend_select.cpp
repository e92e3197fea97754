#include "troupe/embed/backend_select.hpp"

#include <string>

#include "troupe/cpu/matmul.hpp"
#include "troupe/gpu/cuda_backend.hpp"
#include "troupe/gpu/model_support.hpp"
#include "troupe/model/error.hpp"

namespace troupe {

namespace {

backend_choice cpu_choice(std::shared_ptr<const gguf::file> file, const backend_choice_options& o,
                          const std::string& prefix) {
  auto b = std::make_shared<cpu::cpu_backend>(std::move(file), o.cpu);
  backend_choice c;
  c.description = prefix + "device: cpu (" + std::to_string(b->num_threads()) + " threads, " +
                  std::string(cpu::kernel_path()) + ")";
  c.ranks.push_back(std::move(b));
  return c;
}

std::string quantized_kv_refusal(const backend_choice_options& o) {
  return "--kv-cache-dtype " + std::string(name_of(o.cpu.kv_dtype)) + " is supported on the CPU backend only";
}

}  // namespace

std::vector<int> parse_device_list(const std::string& text) {
  std::vector<int> out;
  size_t begin = 0;
  while (begin <= text.size()) {
    const size_t end = std::min(text.find(',', begin), text.size());
    const std::string item = text.substr(begin, end - begin);
    if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos || item.size() > 4) {
      throw error(error_code::invalid_argument, "--devices takes device ids like 0,1; got '" + text + "'");
    }
    out.push_back(std::stoi(item));
    begin = end + 1;
  }
  return out;
}

backend_choice choose_backend(std::shared_ptr<const gguf::file> file, const backend_choice_options& o) {
  if (o.device != "auto" && o.device != "cpu" && o.device != "cuda") {
    throw error(error_code::invalid_argument, "--device takes auto, cpu or cuda; got '" + o.device + "'");
  }
  if (o.tensor_parallel < 1) throw error(error_code::invalid_argument, "--tensor-parallel must be >= 1");
  if (o.device == "cpu") {
    if (o.tensor_parallel > 1) throw error(error_code::invalid_argument, "--tensor-parallel needs --device cuda");
    return cpu_choice(std::move(file), o, "");
  }
  // The CUDA kernels read an fp16 KV cache only.
  const bool is_quantized = o.cpu.kv_dtype != kv_cache_dtype::f16;
  if (is_quantized && o.device == "cuda") {
    throw error(error_code::unsupported, quantized_kv_refusal(o) + "; use --kv-cache-dtype f16 or --device cpu");
  }
  if (is_quantized && o.tensor_parallel > 1) {
    throw error(error_code::unsupported, quantized_kv_refusal(o) + "; --tensor-parallel needs --kv-cache-dtype f16");
  }
  const int available = gpu::num_cuda_devices();
  if (available == 0) {
    if (o.device == "cuda") {
      throw error(error_code::unsupported,
                  gpu::built_with_cuda()
                      ? "--device cuda: no CUDA device is visible (no driver, no GPU, or CUDA_VISIBLE_DEVICES hides them)"
                      : "--device cuda: troupe was built without CUDA (TROUPE_CUDA=OFF or no nvcc)");
    }
    return cpu_choice(std::move(file), o, "auto: no CUDA device found, using the CPU; ");
  }
  if (is_quantized) return cpu_choice(std::move(file), o, "auto: " + quantized_kv_refusal(o) + "; using the CPU; ");
  if (o.device == "auto" && o.tensor_parallel == 1) {
    try {
      gpu::check_cuda_supports(model_config::from_gguf(*file));
    } catch (const error& e) {
      if (e.code() != error_code::unsupported) throw;
      return cpu_choice(std::move(file), o, std::string("auto: ") + e.what() + "; using the CPU; ");
    }
  }
  std::vector<int> devices = o.devices;
  if (devices.empty()) {
    for (int d = 0; d < o.tensor_parallel && d < available; ++d) devices.push_back(d);
  }
  if ((int32_t)devices.size() != o.tensor_parallel) {
    throw error(error_code::invalid_argument, "--tensor-parallel " + std::to_string(o.tensor_parallel) + " needs " +
                                                  std::to_string(o.tensor_parallel) + " devices; " +
                                                  std::to_string(devices.size()) + " given or visible");
  }
  gpu::cuda_backend_options g;
  g.devices = devices;
  g.block_size = o.cpu.block_size;
  g.gpu_memory_utilization = o.gpu_memory_utilization;
  g.num_blocks = o.cpu.num_blocks;
  g.num_swap_blocks = o.num_swap_blocks;
  g.max_num_batched_tokens = o.max_num_batched_tokens;
  g.max_model_len = o.max_model_len;
  g.cuda_graphs = o.cuda_graphs;
  g.eog_ids = o.cpu.eog_ids;
  backend_choice c;
  c.is_cuda = true;
  c.ranks = gpu::make_cuda_backends(std::move(file), g);
  c.description = o.device == "auto" ? "auto: " : "";
  c.description += "device: ";
  for (size_t i = 0; i < devices.size(); ++i) {
    c.description += (i ? "; cuda:" : "cuda:") + std::to_string(devices[i]) + " " +
                     gpu::cuda_device_description(devices[i]);
  }
  if (devices.size() > 1) c.description += " (tensor parallel over NCCL)";
  return c;
}

}  // namespace troupe
