// libFuzzer target for the GGUF reader: any input must either parse into a file whose tensor
// data lies inside the image, or raise troupe::error — never crash, leak or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "troupe/model/error.hpp"
#include "troupe/model/gguf.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto file = troupe::gguf::file::parse(std::span(reinterpret_cast<const std::byte*>(data), size));
    volatile size_t sink = file.describe().size();
    for (const auto& t : file.tensors()) {
      if (file.data_offset() + t.offset + t.num_bytes > file.file_bytes()) std::abort();
      sink = sink + static_cast<size_t>(t.data[0]) + static_cast<size_t>(t.data[t.num_bytes - 1]);
    }
    (void)sink;
  } catch (const troupe::error&) {
    // A rejected input is the expected outcome for most of the corpus.
  }
  return 0;
}
