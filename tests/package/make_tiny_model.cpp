// Writes the tiny random llama model the unit tests use (tests/util/tiny_model.hpp) to a
// GGUF file, for tests that run a separate program on it. Options change its shape and
// weight types (the GPU checks use them to cover every weight type at real widths).
//   usage: make_tiny_model OUT.gguf [--type T] [--embedding-type T] [--layers N] [--dim D]
//                          [--heads H] [--kv-heads K] [--ffn F] [--seed S] [--repeat-layers 1]
//   --repeat-layers 1: every layer stores the first layer's weights (big models, fast)
//   T: f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q4_k q5_k q6_k
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "util/tiny_model.hpp"

namespace {

bool parse_type(const char* name, troupe::ggml_type& out) {
  using troupe::ggml_type;
  for (ggml_type t : {ggml_type::f32, ggml_type::f16, ggml_type::bf16, ggml_type::q4_0, ggml_type::q4_1,
                      ggml_type::q5_0, ggml_type::q5_1, ggml_type::q8_0, ggml_type::q4_k, ggml_type::q5_k,
                      ggml_type::q6_k}) {
    std::string n(troupe::traits_of(t).name);
    for (char& c : n) c = (char)std::tolower((unsigned char)c);
    if (n == name) return out = t, true;
  }
  return false;
}

int usage(const char* self) {
  std::fprintf(stderr,
               "usage: %s OUT.gguf [--type T] [--embedding-type T] [--layers N] [--dim D] [--heads H] "
               "[--kv-heads K] [--ffn F] [--seed S] [--repeat-layers 1]\n",
               self);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc % 2 != 0) return usage(argv[0]);
  troupe::test::tiny_model_options o;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* v = argv[i + 1];
    const int n = std::atoi(v);
    if (flag == "--type" && parse_type(v, o.weight_type)) continue;
    if (flag == "--embedding-type" && parse_type(v, o.embedding_type)) continue;
    if (n > 0 && flag == "--layers") o.num_layers = n;
    else if (n > 0 && flag == "--dim") o.embedding_dim = n;
    else if (n > 0 && flag == "--heads") o.num_heads = n;
    else if (n > 0 && flag == "--kv-heads") o.num_kv_heads = n;
    else if (n > 0 && flag == "--ffn") o.ffn_dim = n;
    else if (n > 0 && flag == "--seed") o.seed = (uint64_t)n;
    else if (n > 0 && flag == "--repeat-layers") o.repeat_first_layer = true;
    else {
      std::fprintf(stderr, "make_tiny_model: bad option %s %s\n", flag.c_str(), v);
      return usage(argv[0]);
    }
  }
  try {
    troupe::test::write_tiny_llama(argv[1], o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_tiny_model: %s\n", e.what());
    return 1;
  }
  return 0;
}
