// Reference quantizers for tests: float rows to the block formats of model/quant.hpp, simple
// min/max (not error-minimizing) so test models can be written in any supported type.
#pragma once
#include <cstddef>
#include <span>
#include <vector>

#include "troupe/model/quant.hpp"

namespace troupe::test {

// Quantizes values (a whole number of blocks of `type`) to the bytes GGUF stores. Supports
// F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K and Q6_K; throws troupe::error
// (invalid_argument) for other types or a length that is not a whole number of blocks.
std::vector<std::byte> quantize(ggml_type type, std::span<const float> values);

}  // namespace troupe::test
