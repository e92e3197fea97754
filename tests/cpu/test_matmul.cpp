// Specification of cpu/matmul: every weight type on every instruction-set path equals a
// double-precision reference, matmul_shared_input equals separate matmuls, paths agree.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "troupe/cpu/cpu_features.hpp"
#include "troupe/cpu/matmul.hpp"
#include "troupe/cpu/quantize_activations.hpp"
#include "troupe/model/error.hpp"
#include "random_weights.hpp"

namespace troupe::cpu {
namespace {

const ggml_type all_types[] = {ggml_type::q4_1, ggml_type::q8_0, ggml_type::q4_0, ggml_type::q5_0,
                               ggml_type::q5_1, ggml_type::q4_k, ggml_type::q5_k, ggml_type::q6_k,
                               ggml_type::f16,  ggml_type::bf16, ggml_type::f32};

// Restores the path the process started with when a test ends.
struct path_guard {
  isa_path saved = active_path();
  ~path_guard() { force_path(saved); }
};

std::vector<float> run_matmul(const packed_matrix& w, const std::vector<float>& x, int64_t num_tokens,
                              thread_pool& pool) {
  std::vector<float> y(static_cast<size_t>(w.num_rows() * num_tokens), -12345.0f);
  matmul(w, x.data(), num_tokens, y.data(), pool);
  return y;
}

// Relative to the sum of |w*a| of each output: float accumulation of at most a few hundred
// block products stays orders of magnitude below this.
constexpr double tolerance = 2e-5;

void check_close(const std::vector<float>& y, const test::reference_product& ref, const std::string& what) {
  REQUIRE(y.size() == ref.y.size());
  size_t num_bad = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double allowed = tolerance * ref.magnitude[i] + 1e-6;
    if (!(std::fabs(y[i] - ref.y[i]) <= allowed)) {
      if (num_bad++ < 3) FAIL_CHECK(what << " output " << i << ": got " << y[i] << " want " << ref.y[i]);
    }
  }
  CHECK_MESSAGE(num_bad == 0, what << ": " << num_bad << " outputs out of tolerance");
}

TEST_CASE("matmul equals the dequantize-and-dot reference for every type, path and odd shape") {
  path_guard guard;
  thread_pool pool(2);
  const int64_t row_counts[] = {1, 17, 40, 75, 130};  // 130: 8+1 groups, the last one 2 rows
  const int64_t token_counts[] = {1, 2, 3, 5, 17, 64, 130};
  for (isa_path path : supported_paths()) {
    force_path(path);
    for (ggml_type type : all_types) {
      const int64_t num_cols = traits_of(type).block_elements == 256 ? 512 : 96;
      for (int64_t num_rows : row_counts) {
        const auto rows = test::random_rows(type, num_rows, num_cols, 7 + static_cast<uint32_t>(num_rows));
        const packed_matrix w = packed_matrix::pack(type, rows.data(), num_rows, num_cols);
        for (int64_t num_tokens : token_counts) {
          if (num_rows >= 75 && num_tokens >= 64 && path == isa_path::portable) continue;  // slow, covered
          const auto x = test::random_activations(num_tokens, num_cols, 99 + static_cast<uint32_t>(num_tokens));
          const auto ref = test::reference_matmul(type, rows, num_rows, num_cols, x, num_tokens);
          check_close(run_matmul(w, x, num_tokens, pool), ref,
                      std::string(to_string(path)) + " " + std::string(traits_of(type).name) + " rows=" +
                          std::to_string(num_rows) + " tokens=" + std::to_string(num_tokens));
        }
      }
    }
  }
}

TEST_CASE("matmul equals the reference with extreme block scales (zero, subnormal, +-65504)") {
  path_guard guard;
  thread_pool pool(2);
  for (isa_path path : supported_paths()) {
    force_path(path);
    for (ggml_type type : all_types) {
      if (!uses_quantized_activations(type)) continue;
      const int64_t num_cols = traits_of(type).block_elements == 256 ? 768 : 160;  // tails past 512
      const int64_t num_rows = 37;
      const auto rows = test::random_rows_extreme_scales(type, num_rows, num_cols, 5);
      const packed_matrix w = packed_matrix::pack(type, rows.data(), num_rows, num_cols);
      for (int64_t num_tokens : {1, 3, 6}) {
        const auto x = test::random_activations(num_tokens, num_cols, 17);
        const auto ref = test::reference_matmul(type, rows, num_rows, num_cols, x, num_tokens);
        check_close(run_matmul(w, x, num_tokens, pool), ref,
                    std::string(to_string(path)) + " " + std::string(traits_of(type).name) + " tokens=" +
                        std::to_string(num_tokens));
      }
    }
  }
}

TEST_CASE("the portable path equals the reference on every machine, for every integer type") {
  path_guard guard;
  thread_pool pool(1);
  force_path(isa_path::portable);
  for (ggml_type type : all_types) {
    const int64_t num_cols = traits_of(type).block_elements == 256 ? 256 : 64;
    const auto rows = test::random_rows(type, 19, num_cols, 23);
    const packed_matrix w = packed_matrix::pack(type, rows.data(), 19, num_cols);
    const auto x = test::random_activations(2, num_cols, 29);
    check_close(run_matmul(w, x, 2, pool), test::reference_matmul(type, rows, 19, num_cols, x, 2),
                std::string("portable ") + std::string(traits_of(type).name));
  }
}

TEST_CASE("matmul is exact on the default model's shapes (Q4_1 576x1536, Q8_0 output head slice)") {
  path_guard guard;
  thread_pool pool(2);
  struct shape { ggml_type type; int64_t rows, cols; };
  for (const shape s : {shape{ggml_type::q4_1, 576, 1536}, shape{ggml_type::q4_1, 192, 576},
                        shape{ggml_type::q8_0, 320, 576}}) {
    const auto rows = test::random_rows(s.type, s.rows, s.cols, 3);
    const packed_matrix w = packed_matrix::pack(s.type, rows.data(), s.rows, s.cols);
    for (int64_t num_tokens : {1, 4, 33}) {
      const auto x = test::random_activations(num_tokens, s.cols, 5);
      const auto ref = test::reference_matmul(s.type, rows, s.rows, s.cols, x, num_tokens);
      for (isa_path path : supported_paths()) {
        force_path(path);
        check_close(run_matmul(w, x, num_tokens, pool), ref, std::string(to_string(path)));
      }
    }
  }
}

TEST_CASE("every path gives the same outputs as the portable path") {
  path_guard guard;
  thread_pool pool(3);
  for (ggml_type type : all_types) {
    const int64_t num_cols = traits_of(type).block_elements == 256 ? 256 : 160;
    const int64_t num_rows = 50;
    const auto rows = test::random_rows(type, num_rows, num_cols, 11);
    const packed_matrix w = packed_matrix::pack(type, rows.data(), num_rows, num_cols);
    const auto x = test::random_activations(9, num_cols, 13);
    force_path(isa_path::portable);
    const auto expected = run_matmul(w, x, 9, pool);
    for (isa_path path : supported_paths()) {
      force_path(path);
      const auto got = run_matmul(w, x, 9, pool);
      for (size_t i = 0; i < got.size(); ++i)
        CHECK_MESSAGE(std::fabs(got[i] - expected[i]) <= 1e-4f * (std::fabs(expected[i]) + 1.0f),
                      to_string(path) << " " << traits_of(type).name << " output " << i);
    }
  }
}

// Speculative verification runs a sequence's 1 + k tokens through the same matrices where
// plain decoding runs one, and a batch mixes sequences: a greedy output stays the same only
// if a token's result does not depend on how many tokens share the call or where it sits.
TEST_CASE("a token's outputs are bit-identical alone and in any batch, on every path") {
  path_guard guard;
  thread_pool pool(2);
  for (ggml_type type : all_types) {
    const int64_t num_cols = traits_of(type).block_elements == 256 ? 512 : 160;
    const int64_t num_rows = 72;  // four and a half row groups: a partial group at the end
    const auto rows = test::random_rows(type, num_rows, num_cols, 21);
    const packed_matrix w = packed_matrix::pack(type, rows.data(), num_rows, num_cols);
    constexpr int64_t num_tokens = 11;
    const auto x = test::random_activations(num_tokens, num_cols, 23);
    for (isa_path path : supported_paths()) {
      force_path(path);
      const auto batch = run_matmul(w, x, num_tokens, pool);
      for (int64_t first : {int64_t{0}, int64_t{3}}) {
        for (int64_t count : {int64_t{1}, int64_t{2}, int64_t{5}}) {
          const std::vector<float> part(x.begin() + first * num_cols, x.begin() + (first + count) * num_cols);
          const auto got = run_matmul(w, part, count, pool);
          int num_different = 0;
          for (int64_t i = 0; i < count * num_rows; ++i)
            num_different += got[static_cast<size_t>(i)] != batch[static_cast<size_t>(first * num_rows + i)];
          CHECK_MESSAGE(num_different == 0, to_string(path) << " " << traits_of(type).name << ": tokens " << first
                                                            << ".." << first + count - 1 << " alone differ from the batch of "
                                                            << num_tokens << " in " << num_different << " outputs");
        }
      }
    }
  }
}

TEST_CASE("matmul_shared_input equals separate matmuls, mixing integer and float types") {
  path_guard guard;
  thread_pool pool(2);
  const int64_t num_cols = 256;
  const ggml_type types[] = {ggml_type::q4_1, ggml_type::q8_0, ggml_type::f16, ggml_type::q4_k};
  const int64_t row_counts[] = {576, 48, 33, 70};
  std::vector<packed_matrix> ws;
  for (int i = 0; i < 4; ++i) {
    const auto rows = test::random_rows(types[i], row_counts[i], num_cols, 21 + static_cast<uint32_t>(i));
    ws.push_back(packed_matrix::pack(types[i], rows.data(), row_counts[i], num_cols));
  }
  for (isa_path path : supported_paths()) {
    force_path(path);
    for (int64_t num_tokens : {1, 6}) {
      const auto x = test::random_activations(num_tokens, num_cols, 31);
      std::vector<std::vector<float>> shared(4);
      std::vector<const packed_matrix*> pointers;
      std::vector<float*> outputs;
      for (int i = 0; i < 4; ++i) {
        shared[i].assign(static_cast<size_t>(row_counts[i] * num_tokens), 0.0f);
        pointers.push_back(&ws[i]);
        outputs.push_back(shared[i].data());
      }
      matmul_shared_input(pointers, x.data(), num_tokens, outputs, pool);
      for (int i = 0; i < 4; ++i) CHECK(shared[i] == run_matmul(ws[i], x, num_tokens, pool));
    }
  }
}

TEST_CASE("matmul gives the same result on 1, 2 and 3 threads") {
  const int64_t num_rows = 200, num_cols = 128;
  const auto rows = test::random_rows(ggml_type::q4_1, num_rows, num_cols, 41);
  const packed_matrix w = packed_matrix::pack(ggml_type::q4_1, rows.data(), num_rows, num_cols);
  const auto x = test::random_activations(7, num_cols, 43);
  thread_pool one(1), two(2), three(3);
  const auto expected = run_matmul(w, x, 7, one);
  CHECK(run_matmul(w, x, 7, two) == expected);
  CHECK(run_matmul(w, x, 7, three) == expected);
}

TEST_CASE("pack rejects types without a kernel and rows that are not whole blocks") {
  const std::vector<uint8_t> bytes(4096);
  CHECK_THROWS_AS(packed_matrix::pack(ggml_type::q2_k, bytes.data(), 2, 256), error);
  CHECK_THROWS_AS(packed_matrix::pack(ggml_type::q4_1, bytes.data(), 2, 48), error);
  CHECK_THROWS_AS(packed_matrix::pack(ggml_type::q4_k, bytes.data(), 2, 96), error);
  try {
    (void)packed_matrix::pack(ggml_type::q3_k, bytes.data(), 1, 256);
  } catch (const error& e) {
    CHECK(e.code() == error_code::unsupported);
  }
}

TEST_CASE("packed_matrix reports its shape, type and packed size") {
  const auto rows = test::random_rows(ggml_type::q4_1, 20, 64, 1);
  const packed_matrix w = packed_matrix::pack(ggml_type::q4_1, rows.data(), 20, 64);
  CHECK(w.num_rows() == 20);
  CHECK(w.num_cols() == 64);
  CHECK(w.type() == ggml_type::q4_1);
  CHECK(w.num_bytes() >= rows.size());
}

TEST_CASE("kernel_path names the active path and TROUPE_CPU_PATH-style forcing lowers it") {
  path_guard guard;
  CHECK(kernel_path() == to_string(active_path()));
  force_path(isa_path::portable);
  CHECK(kernel_path() == "portable");
}

}  // namespace
}  // namespace troupe::cpu
