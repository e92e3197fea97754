// GGUF v2/v3 reader over a read-only mmap: metadata, tensor infos and tensor data pointers.
// Every count, size and offset from the file is checked before it is used; a bad file
// raises troupe::error(invalid_model) with a message naming the key or tensor at fault.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "troupe/model/quant.hpp"

namespace troupe::gguf {

enum class value_type : uint32_t {
  u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
  string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12,
};

std::string_view to_string(value_type type);

// An array value: elements of one scalar type or strings (nested arrays are rejected).
struct array_value {
  value_type element_type;
  std::vector<int64_t> ints;          // u8..i64 and bool (u64 above INT64_MAX is rejected)
  std::vector<double> floats;         // f32, f64
  std::vector<std::string> strings;   // string
  size_t size() const;
};

struct value {
  value_type type;
  std::variant<int64_t, uint64_t, double, bool, std::string, array_value> data;
};

struct tensor_info {
  std::string name;
  ggml_type type;
  int num_dims;
  std::array<int64_t, 4> dims;  // dims[0] is the contiguous axis; unused dims are 1
  uint64_t offset;              // from the start of the data section
  uint64_t num_bytes;
  const std::byte* data;        // into the mapping

  int64_t num_elements() const { return dims[0] * dims[1] * dims[2] * dims[3]; }
  int64_t num_rows() const { return dims[1] * dims[2] * dims[3]; }
};

class file {
 public:
  // Maps and parses the file at path. Throws troupe::error (io_error, invalid_model).
  static file open(const std::string& path);
  // Parses a GGUF image held in memory (used by the fuzz target and tests); the bytes are
  // copied into the file object.
  static file parse(std::span<const std::byte> bytes);

  file(file&&) noexcept;
  file& operator=(file&&) noexcept;
  ~file();

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_bytes() const { return size_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string, value>>& metadata() const { return metadata_; }
  const value* find(std::string_view key) const;

  // Typed getters: nullopt when the key is absent; troupe::error(invalid_model) when present
  // with a type that cannot represent the request (e.g. a string asked for as an integer,
  // a negative number asked for as unsigned).
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
  const array_value* get_array(std::string_view key) const;

  const std::vector<tensor_info>& tensors() const { return tensors_; }
  const tensor_info* find_tensor(std::string_view name) const;

  // Human-readable dump for `troupe info`: header, metadata (long arrays abbreviated),
  // tensor table.
  std::string describe() const;

  // Tells the kernel that this process is done with the bytes [data, data + bytes) of a
  // mapped file for now (after copying a tensor into a packed layout): the pages wholly
  // inside leave the process's resident memory. The bytes stay readable; a later read maps
  // them again from the file's page cache. Nothing happens for a parse()d file or a range
  // outside the file.
  void release(const void* data, size_t bytes) const;

 private:
  file() = default;
  void parse_all();

  struct mapping;
  std::unique_ptr<mapping> map_;
  const std::byte* base_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, value>> metadata_;
  std::unordered_map<std::string, size_t> metadata_index_;
  std::vector<tensor_info> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace troupe::gguf
