// Quantized matrix products for the CPU backend. A weight matrix is repacked once at load
// time into the layout the kernels stream best; activations are quantized once per step
// to 8-bit blocks; each weight block read from memory is applied to every token of the
// batch. AVX-512 (VNNI), AVX2 and portable paths are chosen at run time.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "troupe/cpu/thread_pool.hpp"
#include "troupe/model/quant.hpp"

namespace troupe::cpu {

// Which instruction-set path the kernels use on this machine ("avx512vnni", "avx2",
// "portable"). TROUPE_CPU_PATH=avx2|portable in the environment forces a lower one (tests).
std::string_view kernel_path();

class packed_matrix {
 public:
  // num_rows rows of num_cols values of `type`, row-major, as stored in GGUF (a [K, N]
  // tensor is N rows of K). Throws troupe::error(unsupported) for a type without a kernel.
  static packed_matrix pack(ggml_type type, const void* data, int64_t num_rows, int64_t num_cols);

  packed_matrix();
  packed_matrix(packed_matrix&&) noexcept;
  packed_matrix& operator=(packed_matrix&&) noexcept;
  ~packed_matrix();

  int64_t num_rows() const;
  int64_t num_cols() const;
  ggml_type type() const;
  size_t num_bytes() const;  // memory the packed form holds

  struct impl;
  const impl& get() const { return *impl_; }

 private:
  std::unique_ptr<impl> impl_;
};

// y[t * w.num_rows() + r] = sum_k W[r][k] * x[t * w.num_cols() + k], for t < num_tokens.
void matmul(const packed_matrix& w, const float* x, int64_t num_tokens, float* y, thread_pool& pool);

// Several matrices with the same num_cols applied to the same input (q/k/v, gate/up): the
// input is quantized once and all products run in one parallel section.
void matmul_shared_input(const std::vector<const packed_matrix*>& ws, const float* x,
                         int64_t num_tokens, const std::vector<float*>& ys, thread_pool& pool);

}  // namespace troupe::cpu
