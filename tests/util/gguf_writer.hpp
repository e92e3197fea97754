// Writes GGUF files for tests: metadata of every value type, tensors of any type, and
// deliberately malformed images for the reader's hardening tests.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "troupe/model/gguf.hpp"
#include "troupe/model/quant.hpp"

namespace troupe::test {

class gguf_writer {
 public:
  void add_u8(const std::string& key, uint8_t v);
  void add_i8(const std::string& key, int8_t v);
  void add_u16(const std::string& key, uint16_t v);
  void add_i16(const std::string& key, int16_t v);
  void add_u32(const std::string& key, uint32_t v);
  void add_i32(const std::string& key, int32_t v);
  void add_u64(const std::string& key, uint64_t v);
  void add_i64(const std::string& key, int64_t v);
  void add_f32(const std::string& key, float v);
  void add_f64(const std::string& key, double v);
  void add_bool(const std::string& key, bool v);
  void add_string(const std::string& key, const std::string& v);
  void add_strings(const std::string& key, const std::vector<std::string>& v);
  void add_i32s(const std::string& key, const std::vector<int32_t>& v);
  void add_f32s(const std::string& key, const std::vector<float>& v);
  // A key with a value already encoded (type id + payload bytes), for malformed files.
  void add_raw(const std::string& key, uint32_t type_id, const std::vector<std::byte>& payload);

  // dims as GGUF stores them (dims[0] contiguous); data must be exactly the tensor's bytes.
  void add_tensor(const std::string& name, ggml_type type, const std::vector<int64_t>& dims,
                  std::vector<std::byte> data);
  // A tensor info written exactly as given (any type id, dims and offset) with no data of its
  // own, in order with the ordinary tensors; for malformed files.
  void add_raw_tensor(const std::string& name, uint32_t type_id, const std::vector<uint64_t>& dims,
                      uint64_t offset);

  void set_alignment(uint32_t alignment);  // also writes general.alignment
  std::vector<std::byte> bytes(uint32_t version = 3) const;
  void write(const std::string& path, uint32_t version = 3) const;

 private:
  struct kv { std::string key; uint32_t type_id; std::vector<std::byte> payload; };
  struct tensor {
    std::string name;
    uint32_t type_id;
    std::vector<uint64_t> dims;
    std::vector<std::byte> data;
    bool is_raw = false;       // a raw info: offset is written as is and data is empty
    uint64_t raw_offset = 0;
  };
  std::vector<kv> kvs_;
  std::vector<tensor> tensors_;
  uint32_t alignment_ = 32;
};

}  // namespace troupe::test
