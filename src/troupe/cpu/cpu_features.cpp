// Detects AVX2 / AVX-512 VNNI at run time and keeps the active kernel path.
#include "troupe/cpu/cpu_features.hpp"

#include <atomic>
#include <cstdlib>
#include <string>

#include "troupe/cpu/matmul.hpp"
#include "troupe/model/error.hpp"

namespace troupe::cpu {
namespace {

bool is_supported(isa_path path) {
#if defined(__x86_64__) || defined(__i386__)
  switch (path) {
    case isa_path::portable: return true;
    case isa_path::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
    case isa_path::avx512vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("f16c") &&
             __builtin_cpu_supports("fma");
  }
  return false;
#else
  return path == isa_path::portable;
#endif
}

isa_path initial_path() {
  isa_path path = best_supported_path();
  if (const char* env = std::getenv("TROUPE_CPU_PATH")) {
    const std::string_view wanted(env);
    if (wanted == "portable") path = isa_path::portable;
    else if (wanted == "avx2" && path > isa_path::avx2) path = isa_path::avx2;
  }
  return path;
}

std::atomic<int>& current() {
  static std::atomic<int> path{static_cast<int>(initial_path())};
  return path;
}

}  // namespace

std::string_view to_string(isa_path path) {
  switch (path) {
    case isa_path::portable: return "portable";
    case isa_path::avx2: return "avx2";
    case isa_path::avx512vnni: return "avx512vnni";
  }
  return "unknown";
}

isa_path best_supported_path() {
  if (is_supported(isa_path::avx512vnni)) return isa_path::avx512vnni;
  if (is_supported(isa_path::avx2)) return isa_path::avx2;
  return isa_path::portable;
}

std::vector<isa_path> supported_paths() {
  std::vector<isa_path> paths;
  for (isa_path p : {isa_path::portable, isa_path::avx2, isa_path::avx512vnni})
    if (is_supported(p)) paths.push_back(p);
  return paths;
}

isa_path active_path() { return static_cast<isa_path>(current().load(std::memory_order_relaxed)); }

void force_path(isa_path path) {
  if (!is_supported(path))
    throw error(error_code::unsupported,
                "CPU path " + std::string(to_string(path)) + " is not supported on this processor");
  current().store(static_cast<int>(path), std::memory_order_relaxed);
}

std::string_view kernel_path() { return to_string(active_path()); }

}  // namespace troupe::cpu
