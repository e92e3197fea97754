// matmul / matmul_shared_input: quantizes the activations once, splits the output rows of
// every matrix across the pool's threads, and runs the active path's kernels.
#include "troupe/cpu/matmul.hpp"

#include <algorithm>
#include <string>

#include "troupe/cpu/cpu_features.hpp"
#include "troupe/cpu/packed_layout.hpp"
#include "troupe/model/error.hpp"

namespace troupe::cpu {
namespace {

using detail::act_view;
using detail::kernel_table;

const kernel_table& active_kernels() {
  switch (active_path()) {
    case isa_path::avx512vnni: return detail::avx512_kernels();
    case isa_path::avx2: return detail::avx2_kernels();
    case isa_path::portable: break;
  }
  return detail::portable_kernels();
}

// Work units: an integer matrix splits by runs of 16-row groups (the kernels' row tile,
// see groups_per_unit), a float matrix by 4 rows.
constexpr int64_t float_unit_rows = 4;

int64_t num_units(const packed_matrix::impl& w, int64_t num_tokens) {
  if (w.is_int) {
    const int64_t per_unit = detail::groups_per_unit(num_tokens);
    return (w.num_groups + per_unit - 1) / per_unit;
  }
  return (w.num_rows + float_unit_rows - 1) / float_unit_rows;
}

void run_units(const kernel_table& k, const packed_matrix::impl& w, int64_t unit_begin, int64_t unit_end,
               const act_view& act, const float* x, int64_t num_tokens, float* y) {
  if (w.is_int) {
    const int64_t per_unit = detail::groups_per_unit(num_tokens);
    k.int_groups(w, per_unit * unit_begin, std::min(w.num_groups, per_unit * unit_end), act, num_tokens, y);
  } else {
    k.float_rows(w, unit_begin * float_unit_rows, std::min(w.num_rows, unit_end * float_unit_rows), x,
                 num_tokens, y);
  }
}

// Quantized activations of the current call, owned by the calling thread, grown as needed.
act_view quantize_activations(const kernel_table& k, const float* x, int64_t num_tokens, int64_t num_cols,
                              thread_pool& pool) {
  thread_local std::vector<uint8_t> storage;
  const int64_t nb = num_cols / detail::block_cols;
  const size_t q_bytes = static_cast<size_t>((num_tokens * num_cols + 63) / 64 * 64);
  const size_t per_block = sizeof(float) * 3 + sizeof(int32_t) * 3;
  const size_t total = q_bytes + static_cast<size_t>(num_tokens * nb) * per_block + 64;
  if (storage.size() < total) storage.resize(total);
  uint8_t* base = storage.data() + (64 - reinterpret_cast<uintptr_t>(storage.data()) % 64) % 64;
  auto* q = reinterpret_cast<int8_t*>(base);
  auto* d = reinterpret_cast<float*>(base + q_bytes);
  float* s = d + num_tokens * nb;
  float* s_exact = s + num_tokens * nb;
  auto* sum = reinterpret_cast<int32_t*>(s_exact + num_tokens * nb);
  int32_t* sum_lo = sum + num_tokens * nb;
  int32_t* sum_halves = sum_lo + num_tokens * nb;

  constexpr int64_t parallel_min_values = 1 << 15;
  if (num_tokens > 1 && num_tokens * num_cols >= parallel_min_values && pool.num_threads() > 1) {
    constexpr int64_t tokens_per_chunk = 16;
    pool.run_chunks((num_tokens + tokens_per_chunk - 1) / tokens_per_chunk, [&](int64_t chunk) {
      const int64_t t0 = chunk * tokens_per_chunk;
      const int64_t t1 = std::min(num_tokens, t0 + tokens_per_chunk);
      k.quantize(x + t0 * num_cols, t1 - t0, num_cols, q + t0 * num_cols, d + t0 * nb, s + t0 * nb,
                 s_exact + t0 * nb, sum + t0 * nb, sum_lo + t0 * nb);
    });
  } else {
    k.quantize(x, num_tokens, num_cols, q, d, s, s_exact, sum, sum_lo);
  }
  for (int64_t i = 0; i < num_tokens * nb; ++i) {
    const auto lo = static_cast<uint32_t>(sum_lo[i]) & 0xffffu;  // |sum| <= 16*127: fits int16
    sum_halves[i] = static_cast<int32_t>(lo | (static_cast<uint32_t>(sum[i] - sum_lo[i]) << 16));
  }
  return act_view{q, d, s, s_exact, sum, sum_lo, sum_halves, num_cols, nb};
}

void check_same_input(const packed_matrix& w, int64_t num_cols) {
  if (w.num_rows() == 0)
    throw error(error_code::invalid_argument, "matmul: the weight matrix is empty (moved from or never packed)");
  if (w.num_cols() != num_cols)
    throw error(error_code::invalid_argument,
                "matmul_shared_input: matrices have " + std::to_string(w.num_cols()) + " and " +
                    std::to_string(num_cols) + " columns; a shared input needs equal column counts");
}

// The shared body of matmul and matmul_shared_input; allocates nothing once warm.
void run_matmuls(const packed_matrix* const* ws, float* const* ys, size_t num_matrices, const float* x,
                 int64_t num_tokens, thread_pool& pool) {
  if (num_tokens <= 0) return;
  const int64_t num_cols = ws[0]->num_cols();
  bool needs_quantized = false;
  for (size_t i = 0; i < num_matrices; ++i) {
    check_same_input(*ws[i], num_cols);
    needs_quantized = needs_quantized || ws[i]->get().is_int;
  }
  const kernel_table& k = active_kernels();
  act_view act{};
  if (needs_quantized) act = quantize_activations(k, x, num_tokens, num_cols, pool);

  int64_t total_units = 0;
  for (size_t i = 0; i < num_matrices; ++i) total_units += num_units(ws[i]->get(), num_tokens);
  // Threads claim chunks of units rather than fixed shares: the second vCPU here is
  // sometimes slow or busy, and a fixed split would wait for it.
  const int64_t num_chunks_wanted = 4 * static_cast<int64_t>(pool.num_threads());
  const int64_t chunk_units = std::max<int64_t>(1, total_units / num_chunks_wanted);
  const int64_t num_chunks = (total_units + chunk_units - 1) / chunk_units;
  pool.run_chunks(num_chunks, [&](int64_t chunk) {
    const int64_t begin = chunk * chunk_units;
    const int64_t end = std::min(total_units, begin + chunk_units);
    int64_t offset = 0;
    for (size_t i = 0; i < num_matrices && offset < end; ++i) {
      const packed_matrix::impl& w = ws[i]->get();
      const int64_t n = num_units(w, num_tokens);
      const int64_t lo = std::max<int64_t>(begin - offset, 0);
      const int64_t hi = std::min<int64_t>(end - offset, n);
      if (lo < hi) run_units(k, w, lo, hi, act, x, num_tokens, ys[i]);
      offset += n;
    }
  });
}

}  // namespace

void matmul(const packed_matrix& w, const float* x, int64_t num_tokens, float* y, thread_pool& pool) {
  const packed_matrix* ws[1] = {&w};
  float* ys[1] = {y};
  run_matmuls(ws, ys, 1, x, num_tokens, pool);
}

void matmul_shared_input(const std::vector<const packed_matrix*>& ws, const float* x, int64_t num_tokens,
                         const std::vector<float*>& ys, thread_pool& pool) {
  if (ws.empty() || ws.size() != ys.size())
    throw error(error_code::invalid_argument, "matmul_shared_input: needs one output per matrix, at least one");
  run_matmuls(ws.data(), ys.data(), ws.size(), x, num_tokens, pool);
}

}  // namespace troupe::cpu
