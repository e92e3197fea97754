// Cheap checks of a model's tensor values at load. A GGUF whose tensors hold NaN or
// infinity parses and loads, then serves garbage; a sampled scan of every tensor (float
// elements, and the scales of quantized blocks, where a NaN or infinity spoils a whole
// block) refuses it with the first tensor at fault instead.
#pragma once
#include <cstdint>

#include "troupe/model/gguf.hpp"

namespace troupe {

// Looks at up to max_samples_per_tensor elements or blocks of each tensor, spread evenly
// (all of them in a smaller tensor); about a quarter of a million reads for a model of a
// few hundred tensors. Throws troupe::error(invalid_model) naming the tensor, the element
// or block and what was found. Tensor types it has no layout for are skipped.
void check_tensor_values(const gguf::file& file, int64_t max_samples_per_tensor = 1024);

}  // namespace troupe
