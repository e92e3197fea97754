// CUDA runtime plumbing for the backend: error checks, buffers, the two streams and their
// events, and device discovery.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <utility>

#include "troupe/gpu/cuda_internal.hpp"
#include "troupe/model/error.hpp"

namespace troupe::gpu {

void check_cuda(cudaError_t result, const char* what) {
  if (result != cudaSuccess) {
    throw error(error_code::internal, std::string("CUDA: ") + what + ": " + cudaGetErrorString(result));
  }
}

device_buffer::device_buffer(size_t bytes, const char* what) : bytes_(bytes) {
  if (bytes == 0) return;
  const cudaError_t e = cudaMalloc(&ptr_, bytes);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    char mib[32];
    std::snprintf(mib, sizeof mib, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
    throw error(error_code::context_overflow, std::string("out of device memory allocating ") + mib + " of " + what +
                                                  " (" + cudaGetErrorString(e) + ")");
  }
}

device_buffer& device_buffer::operator=(device_buffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

device_buffer::~device_buffer() {
  if (ptr_) cudaFree(ptr_);
}

pinned_buffer::pinned_buffer(size_t bytes) {
  if (bytes == 0) return;
  const cudaError_t e = cudaHostAlloc(&ptr_, bytes, cudaHostAllocPortable);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw error(error_code::invalid_argument, std::string("cannot pin ") + std::to_string(bytes >> 20) +
                                                  " MiB of host swap space (lower --swap-space): " +
                                                  cudaGetErrorString(e));
  }
}

pinned_buffer::~pinned_buffer() {
  if (ptr_) cudaFreeHost(ptr_);
}

cuda_streams::cuda_streams() {
  check_cuda(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking), "create compute stream");
  check_cuda(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking), "create copy stream");
  for (auto& e : events_) check_cuda(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "create event");
}

cuda_streams::~cuda_streams() {
  cudaStreamSynchronize(copy_);
  cudaStreamSynchronize(compute_);
  for (auto& e : events_) cudaEventDestroy(e);
  cudaStreamDestroy(copy_);
  cudaStreamDestroy(compute_);
}

void cuda_streams::bind(uint16_t* pool, uint16_t* swap, int64_t block_elements) {
  pool_ = pool;
  swap_ = swap;
  block_elements_ = block_elements;
}

void cuda_streams::swap_block_out(int32_t device_block, int32_t host_block) {
  check_cuda(cudaMemcpyAsync(swap_ + host_block * block_elements_, pool_ + device_block * block_elements_,
                             (size_t)block_elements_ * 2, cudaMemcpyDeviceToHost, copy_),
             "swap out");
}

void cuda_streams::swap_block_in(int32_t host_block, int32_t device_block) {
  check_cuda(cudaMemcpyAsync(pool_ + device_block * block_elements_, swap_ + host_block * block_elements_,
                             (size_t)block_elements_ * 2, cudaMemcpyHostToDevice, copy_),
             "swap in");
}

void cuda_streams::copy_blocks(const std::vector<std::pair<int32_t, int32_t>>& pairs) {
  // Pairs run in parallel on the device; a destination that a later pair reads must be
  // written first, so such chains go one pair per launch, in order.
  bool chained = false;
  for (size_t i = 0; i < pairs.size() && !chained; ++i) {
    for (size_t j = i + 1; j < pairs.size() && !chained; ++j) {
      chained = pairs[j].first == pairs[i].second || pairs[j].second == pairs[i].first ||
                pairs[j].second == pairs[i].second;
    }
  }
  std::vector<int32_t> flat;
  for (const auto& [src, dst] : pairs) {
    flat.push_back(src);
    flat.push_back(dst);
  }
  const int32_t* device_pairs = pairs_.upload(flat, compute_);
  if (!chained) {
    kernels::copy_blocks(pool_, device_pairs, (int32_t)pairs.size(), block_elements_, compute_);
    return;
  }
  for (size_t i = 0; i < pairs.size(); ++i) {
    kernels::copy_blocks(pool_, device_pairs + 2 * i, 1, block_elements_, compute_);
  }
}

void cuda_streams::record(stream_kind stream, event_kind event) {
  check_cuda(cudaEventRecord(events_[(size_t)event], of(stream)), "record event");
}

void cuda_streams::wait(stream_kind stream, event_kind event) {
  check_cuda(cudaStreamWaitEvent(of(stream), events_[(size_t)event], 0), "wait for event");
}

int num_cuda_devices() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no device: not an error for --device auto
    return 0;
  }
  return n;
}

std::string cuda_device_description(int device) {
  cudaDeviceProp prop{};
  if (device < 0 || device >= num_cuda_devices() || cudaGetDeviceProperties(&prop, device) != cudaSuccess) return {};
  char buf[320];
  std::snprintf(buf, sizeof buf, "%s, %.1f GiB, sm_%d%d", prop.name,
                (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), prop.major, prop.minor);
  return buf;
}

bool built_with_cuda() { return true; }

}  // namespace troupe::gpu
