#include "troupe/model/tensor_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "troupe/model/error.hpp"
#include "troupe/model/quant.hpp"

namespace troupe {

namespace {

float load_f16(const std::byte* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof h);
  return fp16_to_fp32(h);
}

float load_bf16(const std::byte* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof h);
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

float load_f32(const std::byte* p) {
  float f;
  std::memcpy(&f, p, sizeof f);
  return f;
}

// Where a block's floating-point scales sit (byte offset and encoding); an element type
// (f32, f16, bf16) has one value per unit.
struct scale_field {
  int32_t offset;
  enum { f16, bf16, f32 } kind;
  const char* name;
};

int scale_fields(ggml_type type, scale_field out[2]) {
  switch (type) {
    case ggml_type::f32: out[0] = {0, scale_field::f32, "value"}; return 1;
    case ggml_type::f16: out[0] = {0, scale_field::f16, "value"}; return 1;
    case ggml_type::bf16: out[0] = {0, scale_field::bf16, "value"}; return 1;
    case ggml_type::q4_0:
    case ggml_type::q5_0:
    case ggml_type::q8_0: out[0] = {0, scale_field::f16, "scale d"}; return 1;
    case ggml_type::q4_1:
    case ggml_type::q5_1: out[0] = {0, scale_field::f16, "scale d"}; out[1] = {2, scale_field::f16, "minimum m"}; return 2;
    case ggml_type::q8_1: out[0] = {0, scale_field::f16, "scale d"}; out[1] = {2, scale_field::f16, "sum s"}; return 2;
    case ggml_type::q4_k:
    case ggml_type::q5_k: out[0] = {0, scale_field::f16, "scale d"}; out[1] = {2, scale_field::f16, "scale dmin"}; return 2;
    case ggml_type::q2_k: out[0] = {80, scale_field::f16, "scale d"}; out[1] = {82, scale_field::f16, "scale dmin"}; return 2;
    case ggml_type::q3_k: out[0] = {108, scale_field::f16, "scale d"}; return 1;
    case ggml_type::q6_k: out[0] = {208, scale_field::f16, "scale d"}; return 1;
    case ggml_type::q8_k: out[0] = {0, scale_field::f32, "scale d"}; return 1;
  }
  return 0;
}

float load(const std::byte* p, const scale_field& f) {
  switch (f.kind) {
    case scale_field::f16: return load_f16(p);
    case scale_field::bf16: return load_bf16(p);
    case scale_field::f32: return load_f32(p);
  }
  return 0.0f;
}

}  // namespace

void check_tensor_values(const gguf::file& file, int64_t max_samples_per_tensor) {
  for (const auto& t : file.tensors()) {
    scale_field fields[2];
    const int num_fields = scale_fields(t.type, fields);
    if (num_fields == 0) continue;
    const auto traits = traits_of(t.type);
    const int64_t unit_bytes =
        (t.type == ggml_type::f32 || t.type == ggml_type::f16 || t.type == ggml_type::bf16)
            ? traits.block_bytes / traits.block_elements
            : traits.block_bytes;
    const int64_t num_units = static_cast<int64_t>(t.num_bytes) / unit_bytes;
    if (num_units == 0) continue;
    const int64_t num_samples = std::min(num_units, std::max<int64_t>(max_samples_per_tensor, 1));
    for (int64_t s = 0; s < num_samples; ++s) {
      // Evenly spread, the first and the last unit always among them.
      const int64_t unit = num_samples == 1 ? 0 : s * (num_units - 1) / (num_samples - 1);
      const std::byte* p = t.data + unit * unit_bytes;
      for (int f = 0; f < num_fields; ++f) {
        const float v = load(p + fields[f].offset, fields[f]);
        if (std::isfinite(v)) continue;
        const std::string where = (t.type == ggml_type::f32 || t.type == ggml_type::f16 || t.type == ggml_type::bf16)
                                      ? "element " + std::to_string(unit)
                                      : "block " + std::to_string(unit) + " (its " + fields[f].name + ")";
        throw error(error_code::invalid_model, "tensor '" + t.name + "' holds " +
                                                   (std::isnan(v) ? std::string("NaN") : std::string("infinity")) +
                                                   " at " + where + ": the model file is corrupt");
      }
    }
  }
}

}  // namespace troupe
