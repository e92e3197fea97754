// Writes the tiny random llama model the unit tests use (tests/util/tiny_model.hpp) to a
// GGUF file, for tests that run a separate program on it.
//   usage: make_tiny_model OUT.gguf
#include <cstdio>
#include <fstream>

#include "util/tiny_model.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT.gguf\n", argv[0]);
    return 2;
  }
  const auto bytes = troupe::test::make_tiny_llama();
  std::ofstream out(argv[1], std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "make_tiny_model: cannot write %s\n", argv[1]);
    return 1;
  }
  return 0;
}
