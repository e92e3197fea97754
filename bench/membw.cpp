// DRAM read bandwidth of one thread over a buffer far larger than the caches: the bound on
// single-stream decode, which reads every weight once per token. Prints "X GB/s".
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

__attribute__((target("avx2"))) static double sum_buffer(const float* p, size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  alignas(32) float out[8];
  _mm256_store_ps(out, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  double s = 0;
  for (float v : out) s += v;
  return s;
}

int main() {
  const size_t bytes = size_t(512) << 20;
  auto* buf = static_cast<float*>(std::aligned_alloc(64, bytes));
  std::memset(buf, 1, bytes);
  std::vector<double> rates;
  double sink = 0;
  for (int r = 0; r < 7; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    sink += sum_buffer(buf, bytes / sizeof(float));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates.push_back(bytes / s / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  std::printf("%.1f GB/s (median of 7 reads of 512 MiB, one thread)%s\n", rates[3], sink == 42 ? " " : "");
  std::free(buf);
}
