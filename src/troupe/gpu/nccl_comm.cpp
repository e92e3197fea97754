// NCCL communicators for tensor parallelism inside one process: ncclCommInitAll over the
// ranks' devices, then one in-place fp32 sum per column-split product.
#include "troupe/gpu/cuda_internal.hpp"
#include "troupe/model/error.hpp"

#if TROUPE_HAVE_NCCL
#include <nccl.h>
#endif

namespace troupe::gpu {

#if TROUPE_HAVE_NCCL

struct nccl_group::impl {
  std::vector<ncclComm_t> comms;
};

namespace {
void check_nccl(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw error(error_code::internal, std::string("NCCL: ") + what + ": " + ncclGetErrorString(r));
}
}  // namespace

nccl_group::nccl_group(const std::vector<int>& devices) : impl_(std::make_unique<impl>()) {
  impl_->comms.resize(devices.size());
  check_nccl(ncclCommInitAll(impl_->comms.data(), (int)devices.size(), devices.data()), "init communicators");
}

nccl_group::~nccl_group() {
  for (auto c : impl_->comms) ncclCommDestroy(c);
}

void nccl_group::all_reduce_sum(int32_t rank, float* data, size_t count, cudaStream_t stream) {
  check_nccl(ncclAllReduce(data, data, count, ncclFloat32, ncclSum, impl_->comms[(size_t)rank], stream), "all-reduce");
}

#else

struct nccl_group::impl {};

nccl_group::nccl_group(const std::vector<int>&) {
  throw error(error_code::unsupported, "--tensor-parallel needs NCCL, which this build did not find");
}
nccl_group::~nccl_group() = default;
void nccl_group::all_reduce_sum(int32_t, float*, size_t, cudaStream_t) {}

#endif

}  // namespace troupe::gpu
