// Which instruction-set path the CPU kernels run: what this processor supports, what the
// environment (TROUPE_CPU_PATH) or a test forces, and the kernel table of each path.
#pragma once
#include <string_view>
#include <vector>

namespace troupe::cpu {

enum class isa_path { portable = 0, avx2 = 1, avx512vnni = 2 };

std::string_view to_string(isa_path path);

// The widest path this processor and build support.
isa_path best_supported_path();

// Every path that can run here, narrowest first (portable is always among them).
std::vector<isa_path> supported_paths();

// The path matmul uses now: the best supported one, lowered by TROUPE_CPU_PATH.
isa_path active_path();

// Makes matmul use `path` from now on (tests and benchmarks compare paths in one process).
// Throws troupe::error(unsupported) when this processor cannot run it. Not thread-safe
// with respect to matmuls running at the same time.
void force_path(isa_path path);

}  // namespace troupe::cpu
