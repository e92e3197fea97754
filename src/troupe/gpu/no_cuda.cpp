// The CUDA backend's entry points in a build without nvcc (TROUPE_CUDA=OFF or no toolkit).
#include "troupe/gpu/cuda_backend.hpp"
#include "troupe/model/error.hpp"

namespace troupe::gpu {

int num_cuda_devices() { return 0; }
std::string cuda_device_description(int) { return {}; }
bool built_with_cuda() { return false; }

std::vector<std::shared_ptr<backend>> make_cuda_backends(std::shared_ptr<const gguf::file>,
                                                         const cuda_backend_options&) {
  throw error(error_code::unsupported, "troupe was built without CUDA (TROUPE_CUDA=OFF or no nvcc)");
}

std::shared_ptr<backend> make_cuda_backend(std::shared_ptr<const gguf::file>, const cuda_backend_options&) {
  throw error(error_code::unsupported, "troupe was built without CUDA (TROUPE_CUDA=OFF or no nvcc)");
}

}  // namespace troupe::gpu
