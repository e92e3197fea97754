// gguf_writer: lays out a GGUF v2/v3 image (header, metadata, tensor infos, aligned data)
// the way llama.cpp's writer does, without validating what the test asks it to write.
#include "tests/util/gguf_writer.hpp"

#include <cstring>
#include <fstream>

#include "troupe/model/error.hpp"

namespace troupe::test {
namespace {

using bytes_t = std::vector<std::byte>;

void put_bytes(bytes_t& out, const void* data, size_t num_bytes) {
  const size_t at = out.size();
  out.resize(at + num_bytes);
  if (num_bytes != 0) std::memcpy(out.data() + at, data, num_bytes);
}

template <class T>
void put(bytes_t& out, const T& v) {
  put_bytes(out, &v, sizeof(T));
}

void put_string(bytes_t& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  put_bytes(out, s.data(), s.size());
}

template <class T>
bytes_t encode(const T& v) {
  bytes_t out;
  put(out, v);
  return out;
}

template <class T>
bytes_t encode_array(uint32_t element_type, const std::vector<T>& values) {
  bytes_t out;
  put<uint32_t>(out, element_type);
  put<uint64_t>(out, values.size());
  for (const T& v : values) put(out, v);
  return out;
}

void pad_to(bytes_t& out, uint64_t alignment) {
  while (out.size() % alignment != 0) out.push_back(std::byte{0});
}

constexpr uint32_t id(gguf::value_type t) { return static_cast<uint32_t>(t); }

}  // namespace

void gguf_writer::add_u8(const std::string& key, uint8_t v) { add_raw(key, id(gguf::value_type::u8), encode(v)); }
void gguf_writer::add_i8(const std::string& key, int8_t v) { add_raw(key, id(gguf::value_type::i8), encode(v)); }
void gguf_writer::add_u16(const std::string& key, uint16_t v) { add_raw(key, id(gguf::value_type::u16), encode(v)); }
void gguf_writer::add_i16(const std::string& key, int16_t v) { add_raw(key, id(gguf::value_type::i16), encode(v)); }
void gguf_writer::add_u32(const std::string& key, uint32_t v) { add_raw(key, id(gguf::value_type::u32), encode(v)); }
void gguf_writer::add_i32(const std::string& key, int32_t v) { add_raw(key, id(gguf::value_type::i32), encode(v)); }
void gguf_writer::add_u64(const std::string& key, uint64_t v) { add_raw(key, id(gguf::value_type::u64), encode(v)); }
void gguf_writer::add_i64(const std::string& key, int64_t v) { add_raw(key, id(gguf::value_type::i64), encode(v)); }
void gguf_writer::add_f32(const std::string& key, float v) { add_raw(key, id(gguf::value_type::f32), encode(v)); }
void gguf_writer::add_f64(const std::string& key, double v) { add_raw(key, id(gguf::value_type::f64), encode(v)); }

void gguf_writer::add_bool(const std::string& key, bool v) {
  add_raw(key, id(gguf::value_type::boolean), encode<uint8_t>(v ? 1 : 0));
}

void gguf_writer::add_string(const std::string& key, const std::string& v) {
  bytes_t payload;
  put_string(payload, v);
  add_raw(key, id(gguf::value_type::string), std::move(payload));
}

void gguf_writer::add_strings(const std::string& key, const std::vector<std::string>& v) {
  bytes_t payload;
  put<uint32_t>(payload, id(gguf::value_type::string));
  put<uint64_t>(payload, v.size());
  for (const auto& s : v) put_string(payload, s);
  add_raw(key, id(gguf::value_type::array), std::move(payload));
}

void gguf_writer::add_i32s(const std::string& key, const std::vector<int32_t>& v) {
  add_raw(key, id(gguf::value_type::array), encode_array(id(gguf::value_type::i32), v));
}

void gguf_writer::add_f32s(const std::string& key, const std::vector<float>& v) {
  add_raw(key, id(gguf::value_type::array), encode_array(id(gguf::value_type::f32), v));
}

void gguf_writer::add_raw(const std::string& key, uint32_t type_id, const std::vector<std::byte>& payload) {
  kvs_.push_back(kv{key, type_id, payload});
}

void gguf_writer::add_tensor(const std::string& name, ggml_type type, const std::vector<int64_t>& dims,
                             std::vector<std::byte> data) {
  if (dims.empty()) throw error(error_code::invalid_argument, "gguf_writer: tensor " + name + " has no dims");
  int64_t num_rows = 1;
  for (size_t d = 1; d < dims.size(); ++d) num_rows *= dims[d];
  const auto bytes_per_row = row_bytes(type, dims[0]);
  if (!bytes_per_row || *bytes_per_row * static_cast<uint64_t>(num_rows) != data.size()) {
    throw error(error_code::invalid_argument,
                "gguf_writer: tensor " + name + " has " + std::to_string(data.size()) + " bytes of data, " +
                    "which does not match its type and dims");
  }
  tensor t{name, static_cast<uint32_t>(type), {}, std::move(data)};
  for (int64_t d : dims) t.dims.push_back(static_cast<uint64_t>(d));
  tensors_.push_back(std::move(t));
}

void gguf_writer::add_raw_tensor(const std::string& name, uint32_t type_id, const std::vector<uint64_t>& dims,
                                 uint64_t offset) {
  tensors_.push_back(tensor{name, type_id, dims, {}, true, offset});
}

void gguf_writer::set_alignment(uint32_t alignment) {
  alignment_ = alignment;
  for (auto& entry : kvs_) {
    if (entry.key == "general.alignment") {
      entry.payload = encode(alignment);
      return;
    }
  }
  add_u32("general.alignment", alignment);
}

std::vector<std::byte> gguf_writer::bytes(uint32_t version) const {
  bytes_t out;
  put_bytes(out, "GGUF", 4);
  put<uint32_t>(out, version);
  put<uint64_t>(out, tensors_.size());
  put<uint64_t>(out, kvs_.size());
  for (const auto& entry : kvs_) {
    put_string(out, entry.key);
    put<uint32_t>(out, entry.type_id);
    put_bytes(out, entry.payload.data(), entry.payload.size());
  }
  uint64_t next_offset = 0;
  for (const auto& t : tensors_) {
    put_string(out, t.name);
    put<uint32_t>(out, static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) put<uint64_t>(out, d);
    put<uint32_t>(out, t.type_id);
    if (t.is_raw) {
      put<uint64_t>(out, t.raw_offset);
    } else {
      put<uint64_t>(out, next_offset);
      next_offset += (t.data.size() + alignment_ - 1) / alignment_ * alignment_;
    }
  }
  pad_to(out, alignment_);
  for (const auto& t : tensors_) {
    if (t.is_raw) continue;
    put_bytes(out, t.data.data(), t.data.size());
    pad_to(out, alignment_);
  }
  return out;
}

void gguf_writer::write(const std::string& path, uint32_t version) const {
  const bytes_t image = bytes(version);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(image.data()), static_cast<std::streamsize>(image.size()));
  if (!f) throw error(error_code::io_error, "gguf_writer: cannot write " + path);
}

}  // namespace troupe::test
