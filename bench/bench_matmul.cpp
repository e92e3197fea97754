// Microbenchmark of cpu/matmul on SmolLM2-135M's shapes (Q4_1 layers, Q8_0 output head):
// GB/s of weights and GOP/s per matrix at 1..512 tokens on 1 and 2 threads, the whole
// model's matmuls as tok/s, and the AVX2 path as a peer. Prints a table and RESULT lines.
//   bench_matmul [--quick] [--model-only] [--reps N] [--shape TYPE:ROWSxCOLS ...]
// --shape (repeatable) replaces the default shapes, e.g. --shape Q6_K:151936x896 for the
// output head of a larger model; TYPE is a GGUF type name (Q4_0, Q5_0, Q8_0, Q4_K, ...).
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "troupe/cpu/cpu_features.hpp"
#include "troupe/cpu/matmul.hpp"

using namespace troupe;
using namespace troupe::cpu;

namespace {

// Random quantized rows with sane fp16 scales (the values do not matter for speed).
std::vector<uint8_t> random_rows(ggml_type type, int64_t rows, int64_t cols, uint32_t seed) {
  const auto traits = traits_of(type);
  const int64_t num_blocks = rows * cols / traits.block_elements;
  std::vector<uint8_t> bytes(static_cast<size_t>(num_blocks * traits.block_bytes));
  std::mt19937 rng(seed);
  for (size_t i = 0; i < bytes.size(); i += 4) {
    const uint32_t v = rng();
    std::memcpy(bytes.data() + i, &v, std::min<size_t>(4, bytes.size() - i));
  }
  const uint16_t d = fp32_to_fp16(0.01f), m = fp32_to_fp16(-0.05f);
  const bool is_q6_k = type == ggml_type::q6_k;  // its fp16 d is the last field
  const bool has_second = type == ggml_type::q4_1 || type == ggml_type::q5_1 || type == ggml_type::q4_k ||
                          type == ggml_type::q5_k;
  for (int64_t b = 0; b < num_blocks; ++b) {
    std::memcpy(bytes.data() + b * traits.block_bytes + (is_q6_k ? 208 : 0), &d, 2);
    if (has_second) std::memcpy(bytes.data() + b * traits.block_bytes + 2, &m, 2);
  }
  return bytes;
}

packed_matrix make(ggml_type type, int64_t rows, int64_t cols, uint32_t seed) {
  const auto bytes = random_rows(type, rows, cols, seed);
  return packed_matrix::pack(type, bytes.data(), rows, cols);
}

double process_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Median wall time, and median process CPU time: on a machine shared with other jobs the
// CPU time of a 1-thread run is the steadier figure (it leaves out time spent preempted).
struct timing {
  double wall_s;
  double cpu_s;
};

template <class Fn>
timing median_time(int reps, Fn&& fn) {
  fn();  // warm up: page in, grow scratch buffers
  std::vector<double> walls, cpus;
  for (int i = 0; i < reps; ++i) {
    const double c0 = process_cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    walls.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    cpus.push_back(process_cpu_seconds() - c0);
  }
  std::sort(walls.begin(), walls.end());
  std::sort(cpus.begin(), cpus.end());
  return {walls[walls.size() / 2], cpus[cpus.size() / 2]};
}

struct shape {
  std::string name;
  ggml_type type;
  int64_t rows, cols;
};

// "Q6_K:151936x896" -> a shape; exits with a message on anything else.
shape parse_shape(const char* text) {
  const std::string s(text);
  const auto colon = s.find(':'), x = s.find('x', colon == std::string::npos ? 0 : colon);
  if (colon != std::string::npos && x != std::string::npos) {
    const std::string name = s.substr(0, colon);
    for (uint32_t id = 0; id < 64; ++id) {
      const auto traits = traits_of(id);
      if (!traits || traits->name != name) continue;
      const int64_t rows = std::atoll(s.substr(colon + 1, x - colon - 1).c_str());
      const int64_t cols = std::atoll(s.substr(x + 1).c_str());
      if (rows > 0 && cols > 0) return {s, static_cast<ggml_type>(id), rows, cols};
    }
  }
  std::fprintf(stderr, "bench_matmul: --shape wants TYPE:ROWSxCOLS with a GGUF type name, e.g. Q6_K:151936x896\n");
  std::exit(2);
}

// One transformer layer of the default model plus the tied output head.
struct model_weights {
  std::vector<packed_matrix> q, k, v, o, gate, up, down;
  packed_matrix head;
};

model_weights make_model(int num_layers) {
  model_weights m;
  for (int l = 0; l < num_layers; ++l) {
    const uint32_t s = 100u * static_cast<uint32_t>(l);
    m.q.push_back(make(ggml_type::q4_1, 576, 576, s + 1));
    m.k.push_back(make(ggml_type::q4_1, 192, 576, s + 2));
    m.v.push_back(make(ggml_type::q4_1, 192, 576, s + 3));
    m.o.push_back(make(ggml_type::q4_1, 576, 576, s + 4));
    m.gate.push_back(make(ggml_type::q4_1, 1536, 576, s + 5));
    m.up.push_back(make(ggml_type::q4_1, 1536, 576, s + 6));
    m.down.push_back(make(ggml_type::q4_1, 576, 1536, s + 7));
  }
  m.head = make(ggml_type::q8_0, 49152, 576, 9);
  return m;
}

// The matmuls of one forward step over num_tokens tokens, as the forward pass issues them.
// The output head runs on the last token only, as in prefill; decode has one token anyway.
void model_step(const model_weights& m, int64_t num_tokens, const std::vector<float>& x576,
                const std::vector<float>& x1536, std::vector<float>& y, thread_pool& pool) {
  float* out = y.data();
  const int64_t n = num_tokens;
  for (size_t l = 0; l < m.q.size(); ++l) {
    matmul_shared_input({&m.q[l], &m.k[l], &m.v[l]}, x576.data(), n, {out, out + 576 * n, out + 768 * n}, pool);
    matmul(m.o[l], x576.data(), n, out, pool);
    matmul_shared_input({&m.gate[l], &m.up[l]}, x576.data(), n, {out, out + 1536 * n}, pool);
    matmul(m.down[l], x1536.data(), n, out, pool);
  }
  matmul(m.head, x576.data(), 1, out, pool);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  bool model_only = false;
  int reps = 7;
  std::vector<shape> custom_shapes;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    else if (std::strcmp(argv[i], "--model-only") == 0) model_only = true;
    else if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--shape") == 0 && i + 1 < argc) custom_shapes.push_back(parse_shape(argv[++i]));
  }
  const isa_path best = best_supported_path();
  std::printf("kernel path: %s (best supported: %s)\n", std::string(kernel_path()).c_str(),
              std::string(to_string(best)).c_str());

  std::vector<shape> shapes = {{"attn_q/o 576x576", ggml_type::q4_1, 576, 576},
                               {"attn_k/v 192x576", ggml_type::q4_1, 192, 576},
                               {"ffn_gate/up 1536x576", ggml_type::q4_1, 1536, 576},
                               {"ffn_down 576x1536", ggml_type::q4_1, 576, 1536},
                               {"output 49152x576 Q8_0", ggml_type::q8_0, 49152, 576}};
  if (!custom_shapes.empty()) shapes = custom_shapes;
  const std::vector<int64_t> token_counts = quick ? std::vector<int64_t>{1, 64} : std::vector<int64_t>{1, 4, 16, 64, 512};
  const std::vector<float> x = std::vector<float>(512 * 1536, 0.5f);
  std::vector<float> y(static_cast<size_t>(512 * 49152));
  std::mt19937 rng(1);
  std::vector<float> xr(x.size());
  for (auto& v : xr) v = std::normal_distribution<float>(0.0f, 1.0f)(rng);

  std::printf("\n%-24s %6s %7s %11s %10s %10s %11s\n", "matrix", "tokens", "threads", "us/call", "GB/s", "GOP/s",
              "cpu us/call");
  for (int threads : {1, 2}) {
    if (model_only) break;
    thread_pool pool(threads);
    for (const shape& s : shapes) {
      const packed_matrix w = make(s.type, s.rows, s.cols, 1);
      for (int64_t n : token_counts) {
        if (s.rows >= 32768 && n > 64) continue;  // the head runs on the last token of a prefill
        const timing tm = median_time(reps, [&] { matmul(w, xr.data(), n, y.data(), pool); });
        const double sec = tm.wall_s;
        const double gbs = static_cast<double>(w.num_bytes()) / sec / 1e9;
        const double gops = 2.0 * static_cast<double>(s.rows * s.cols * n) / sec / 1e9;
        std::printf("%-24s %6ld %7d %11.1f %10.2f %10.1f %11.1f\n", s.name.c_str(), static_cast<long>(n), threads, sec * 1e6,
                    gbs, gops, tm.cpu_s * 1e6);
        std::printf("RESULT {\"bench\":\"matmul\",\"path\":\"%s\",\"matrix\":\"%s\",\"tokens\":%ld,\"threads\":%d,"
                    "\"us\":%.2f,\"cpu_us\":%.2f,\"gbps\":%.3f,\"gops\":%.2f}\n",
                    std::string(kernel_path()).c_str(), s.name.c_str(), static_cast<long>(n), threads, sec * 1e6,
                    tm.cpu_s * 1e6, gbs, gops);
      }
    }
  }

  if (!custom_shapes.empty()) return 0;  // the whole-model table is SmolLM2's Q4_1 shapes
  const int num_layers = 30;
  const model_weights model = make_model(num_layers);
  size_t model_bytes = model.head.num_bytes();
  for (int l = 0; l < num_layers; ++l)
    for (const auto* v : {&model.q, &model.k, &model.v, &model.o, &model.gate, &model.up, &model.down})
      model_bytes += (*v)[static_cast<size_t>(l)].num_bytes();
  std::printf("\nwhole model's matmuls (30 layers + output head, %.1f MB of packed weights)\n", model_bytes / 1e6);
  std::printf("%-12s %6s %7s %11s %10s %10s %12s\n", "path", "tokens", "threads", "ms/step", "tok/s", "GB/s",
              "cpu ms/step");
  std::vector<isa_path> paths = {best};
  if (best != isa_path::avx2 && best > isa_path::portable) paths.push_back(isa_path::avx2);
  for (isa_path path : paths) {
    force_path(path);
    for (int threads : {1, 2}) {
      thread_pool pool(threads);
      for (int64_t n : {int64_t{1}, int64_t{512}}) {
        if (quick && n == 512 && path != best) continue;
        const timing tm = median_time(n == 1 ? 3 * reps : std::max(3, reps / 2),
                                      [&] { model_step(model, n, xr, xr, y, pool); });
        const double sec = tm.wall_s;
        const double tok_s = static_cast<double>(n) / sec;
        const double gbs = static_cast<double>(model_bytes) / sec / 1e9;
        std::printf("%-12s %6ld %7d %11.2f %10.1f %10.2f %12.2f\n", std::string(to_string(path)).c_str(),
                    static_cast<long>(n), threads, sec * 1e3, tok_s, gbs, tm.cpu_s * 1e3);
        std::printf("RESULT {\"bench\":\"model_matmuls\",\"path\":\"%s\",\"tokens\":%ld,\"threads\":%d,"
                    "\"ms\":%.3f,\"cpu_ms\":%.3f,\"tok_s\":%.1f,\"gbps\":%.3f}\n",
                    std::string(to_string(path)).c_str(), static_cast<long>(n), threads, sec * 1e3, tm.cpu_s * 1e3,
                    tok_s, gbs);
      }
    }
  }
  return 0;
}
