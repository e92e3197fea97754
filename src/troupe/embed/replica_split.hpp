// `troupe serve --replicas N`: N engines in one process behind the router, each with its
// own KV pool, scheduler and worker(s). The split of the machine between them: on a CUDA
// machine each replica gets its own --tensor-parallel devices (consecutive, from --devices
// or every visible one); on the CPU each gets an equal share of the compute threads.
#pragma once
#include <string>
#include <vector>

#include "troupe/config/config.hpp"

namespace troupe {

// One config per replica, from the serve's. num_cuda_devices: visible CUDA devices (0 on a
// machine without them or a build without CUDA); hardware_threads: the CPU's. Throws
// troupe::error(invalid_argument) naming --replicas when the machine cannot be split that
// way (fewer devices than replicas x --tensor-parallel, more replicas than threads).
std::vector<config> split_for_replicas(const config& c, int replicas, int num_cuda_devices, int hardware_threads);

}  // namespace troupe
