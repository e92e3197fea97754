// GGUF v2/v3 reader: maps the file, then validates the header, metadata and tensor infos
// before any count, size or offset taken from the file is used. describe() renders `troupe info`.
#include "troupe/model/gguf.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <map>

#include "troupe/model/error.hpp"

static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

namespace troupe::gguf {

std::string_view to_string(value_type type) {
  switch (type) {
    case value_type::u8: return "u8";
    case value_type::i8: return "i8";
    case value_type::u16: return "u16";
    case value_type::i16: return "i16";
    case value_type::u32: return "u32";
    case value_type::i32: return "i32";
    case value_type::f32: return "f32";
    case value_type::boolean: return "bool";
    case value_type::string: return "string";
    case value_type::array: return "array";
    case value_type::u64: return "u64";
    case value_type::i64: return "i64";
    case value_type::f64: return "f64";
  }
  return "unknown";
}

size_t array_value::size() const {
  switch (element_type) {
    case value_type::f32:
    case value_type::f64: return floats.size();
    case value_type::string: return strings.size();
    default: return ints.size();
  }
}

// Owns the bytes behind a file: a read-only mmap, or a heap copy for parse().
struct file::mapping {
  void* address = nullptr;
  size_t length = 0;
  std::vector<std::byte> owned;

  mapping() = default;
  mapping(const mapping&) = delete;
  mapping& operator=(const mapping&) = delete;
  ~mapping() {
    if (address != nullptr) munmap(address, length);
  }
};

namespace {

constexpr uint64_t default_alignment = 32;
constexpr uint64_t min_kv_bytes = 8 + 4 + 1;            // empty key, type id, one-byte value
constexpr uint64_t min_tensor_info_bytes = 8 + 4 + 8 + 4 + 8;  // empty name, n_dims, one dim, type, offset

[[noreturn]] void fail(const std::string& message) { throw error(error_code::invalid_model, message); }

std::string quoted(std::string_view s) {
  std::string out;  // appended piecewise: GCC 12 warns falsely (-Wrestrict) on "'" + std::string&&
  out.reserve(s.size() + 2);
  out += '\'';
  out += s;
  out += '\'';
  return out;
}

// Bytes one element of a scalar type takes; 0 for string/array (variable or not allowed).
uint64_t scalar_bytes(value_type type) {
  switch (type) {
    case value_type::u8: case value_type::i8: case value_type::boolean: return 1;
    case value_type::u16: case value_type::i16: return 2;
    case value_type::u32: case value_type::i32: case value_type::f32: return 4;
    case value_type::u64: case value_type::i64: case value_type::f64: return 8;
    default: return 0;
  }
}

// Reserves room for `count` elements, but never more bytes than the file has left: a count
// that passed the fits-in-the-file check can still be ~10x larger once widened in memory.
template <class T>
void reserve_bounded(std::vector<T>& v, uint64_t count, uint64_t remaining_bytes) {
  v.reserve(static_cast<size_t>(std::min<uint64_t>(count, remaining_bytes / sizeof(T) + 1)));
}

bool is_known_value_type(uint32_t id) { return id <= static_cast<uint32_t>(value_type::f64); }

// A bounds-checked little-endian cursor over the file image.
class reader {
 public:
  reader(const std::byte* base, uint64_t size) : base_(base), size_(size) {}

  uint64_t position() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  void need(uint64_t num_bytes, std::string_view what) const {
    if (num_bytes > remaining()) {
      fail("truncated file: " + std::string(what) + " at offset " + std::to_string(pos_) + " needs " +
           std::to_string(num_bytes) + " bytes but only " + std::to_string(remaining()) +
           " remain (file is " + std::to_string(size_) + " bytes)");
    }
  }

  template <class T>
  T read(std::string_view what) {
    need(sizeof(T), what);
    T out;
    std::memcpy(&out, base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return out;
  }

  std::string read_string(std::string_view what) {
    const auto length = read<uint64_t>(what);
    if (length > remaining()) {
      fail(std::string(what) + ": string length " + std::to_string(length) + " at offset " +
           std::to_string(pos_ - 8) + " is longer than the " + std::to_string(remaining()) +
           " bytes left in the file");
    }
    std::string out(reinterpret_cast<const char*>(base_ + pos_), static_cast<size_t>(length));
    pos_ += length;
    return out;
  }

 private:
  const std::byte* base_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

// Reads one scalar of the given type, widened to what `value` and `array_value` hold.
struct scalar {
  enum class kind { signed_int, unsigned_int, floating, boolean } kind;
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0;
};

scalar read_scalar(reader& in, value_type type, std::string_view what) {
  scalar s{scalar::kind::signed_int};
  switch (type) {
    case value_type::u8: s.i = in.read<uint8_t>(what); break;
    case value_type::i8: s.i = in.read<int8_t>(what); break;
    case value_type::u16: s.i = in.read<uint16_t>(what); break;
    case value_type::i16: s.i = in.read<int16_t>(what); break;
    case value_type::u32: s.i = in.read<uint32_t>(what); break;
    case value_type::i32: s.i = in.read<int32_t>(what); break;
    case value_type::i64: s.i = in.read<int64_t>(what); break;
    case value_type::u64: s.kind = scalar::kind::unsigned_int; s.u = in.read<uint64_t>(what); break;
    case value_type::f32: s.kind = scalar::kind::floating; s.f = in.read<float>(what); break;
    case value_type::f64: s.kind = scalar::kind::floating; s.f = in.read<double>(what); break;
    case value_type::boolean: s.kind = scalar::kind::boolean; s.i = in.read<uint8_t>(what) != 0; break;
    default: fail(std::string(what) + ": not a scalar type");
  }
  return s;
}

array_value read_array(reader& in, const std::string& what) {
  array_value out;
  const auto type_id = in.read<uint32_t>(what);
  if (type_id == static_cast<uint32_t>(value_type::array)) fail(what + ": nested arrays are not supported");
  if (!is_known_value_type(type_id)) fail(what + ": unknown array element type " + std::to_string(type_id));
  out.element_type = static_cast<value_type>(type_id);
  const auto count = in.read<uint64_t>(what);
  // Each element takes at least this many bytes, so the count is bounded by the file size
  // before anything is reserved.
  const uint64_t min_element_bytes = out.element_type == value_type::string ? 8 : scalar_bytes(out.element_type);
  if (count > in.remaining() / min_element_bytes) {
    fail(what + ": array of " + std::to_string(count) + " " + std::string(to_string(out.element_type)) +
         " elements cannot fit in the " + std::to_string(in.remaining()) + " bytes left in the file");
  }
  const auto n = static_cast<size_t>(count);
  if (out.element_type == value_type::string) {
    reserve_bounded(out.strings, n, in.remaining());
    for (size_t i = 0; i < n; ++i) out.strings.push_back(in.read_string(what));
  } else if (out.element_type == value_type::f32 || out.element_type == value_type::f64) {
    reserve_bounded(out.floats, n, in.remaining());
    for (size_t i = 0; i < n; ++i) out.floats.push_back(read_scalar(in, out.element_type, what).f);
  } else {
    reserve_bounded(out.ints, n, in.remaining());
    for (size_t i = 0; i < n; ++i) {
      const scalar s = read_scalar(in, out.element_type, what);
      if (s.kind == scalar::kind::unsigned_int) {
        if (s.u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
          fail(what + ": u64 element " + std::to_string(i) + " (" + std::to_string(s.u) +
               ") is larger than INT64_MAX");
        }
        out.ints.push_back(static_cast<int64_t>(s.u));
      } else {
        out.ints.push_back(s.i);
      }
    }
  }
  return out;
}

value read_value(reader& in, const std::string& key) {
  const std::string what = "key " + quoted(key);
  const auto type_id = in.read<uint32_t>(what);
  if (!is_known_value_type(type_id)) fail(what + ": unknown value type " + std::to_string(type_id));
  const auto type = static_cast<value_type>(type_id);
  if (type == value_type::string) return value{type, in.read_string(what)};
  if (type == value_type::array) return value{type, read_array(in, what)};
  const scalar s = read_scalar(in, type, what);
  switch (s.kind) {
    case scalar::kind::unsigned_int: return value{type, s.u};
    case scalar::kind::floating: return value{type, s.f};
    case scalar::kind::boolean: return value{type, s.i != 0};
    case scalar::kind::signed_int: break;
  }
  return value{type, s.i};
}

// x rounded up to a multiple of the power of two `alignment`; nullopt on overflow.
std::optional<uint64_t> align_up(uint64_t x, uint64_t alignment) {
  if (x > std::numeric_limits<uint64_t>::max() - (alignment - 1)) return std::nullopt;
  return (x + alignment - 1) & ~(alignment - 1);
}

[[noreturn]] void io_fail(const std::string& path, std::string_view action, std::string_view reason) {
  throw error(error_code::io_error, "cannot " + std::string(action) + " '" + path + "': " + std::string(reason));
}

struct fd_guard {
  int fd;
  ~fd_guard() { ::close(fd); }
};

}  // namespace

file::file(file&&) noexcept = default;
file& file::operator=(file&&) noexcept = default;
file::~file() = default;

file file::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) io_fail(path, "open", std::strerror(errno));
  const fd_guard guard{fd};
  struct stat st {};
  if (fstat(fd, &st) != 0) io_fail(path, "stat", std::strerror(errno));
  if (S_ISDIR(st.st_mode)) io_fail(path, "map", std::strerror(EISDIR));
  if (!S_ISREG(st.st_mode)) io_fail(path, "map", "not a regular file");
  if (st.st_size == 0) io_fail(path, "map", "the file is empty");
  auto map = std::make_unique<mapping>();
  map->length = static_cast<size_t>(st.st_size);
  // The mapping stays valid after the descriptor is closed.
  void* address = mmap(nullptr, map->length, PROT_READ, MAP_PRIVATE, fd, 0);
  if (address == MAP_FAILED) io_fail(path, "mmap", std::strerror(errno));
  map->address = address;

  file f;
  f.base_ = static_cast<const std::byte*>(address);
  f.size_ = map->length;
  f.map_ = std::move(map);
  try {
    f.parse_all();
  } catch (const error& e) {
    throw error(e.code(), path + ": " + e.what());
  }
  return f;
}

void file::release(const void* data, size_t bytes) const {
  if (!map_ || map_->address == nullptr || data == nullptr) return;
  const auto begin = reinterpret_cast<uintptr_t>(data);
  const auto base = reinterpret_cast<uintptr_t>(map_->address);
  if (begin < base || bytes > map_->length || begin - base > map_->length - bytes) return;
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t first = (begin + page - 1) / page * page;
  const uintptr_t last = (begin + bytes) / page * page;
  // A private read-only mapping that was never written: dropping its pages loses nothing.
  if (last > first) (void)madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

file file::parse(std::span<const std::byte> bytes) {
  auto map = std::make_unique<mapping>();
  map->owned.assign(bytes.begin(), bytes.end());
  file f;
  f.base_ = map->owned.data();
  f.size_ = map->owned.size();
  f.map_ = std::move(map);
  f.parse_all();
  return f;
}

void file::parse_all() {
  reader in(base_, size_);
  if (size_ < 4) fail("not a GGUF file: " + std::to_string(size_) + " bytes is too short for the magic");
  const auto magic = in.read<std::array<char, 4>>("magic");
  if (std::memcmp(magic.data(), "GGUF", 4) != 0) {
    std::string shown;
    for (char c : magic) shown += (c >= 0x20 && c < 0x7f) ? c : '?';
    fail("not a GGUF file: magic is '" + shown + "', expected 'GGUF'");
  }
  version_ = in.read<uint32_t>("version");
  if (version_ == 1) fail("GGUF version 1 is not supported (it uses 32-bit counts); re-convert the model to v3");
  if (version_ != 2 && version_ != 3) {
    if (version_ == 0x02000000u || version_ == 0x03000000u) fail("big-endian GGUF files are not supported");
    fail("unsupported GGUF version " + std::to_string(version_) + " (expected 2 or 3)");
  }
  const auto num_tensors = in.read<uint64_t>("tensor count");
  const auto num_kvs = in.read<uint64_t>("metadata count");
  // Before reserving anything, check that the counts could fit in what is left of the file.
  if (num_kvs > in.remaining() / min_kv_bytes) {
    fail("metadata count " + std::to_string(num_kvs) + " cannot fit in the " + std::to_string(in.remaining()) +
         " bytes after the header");
  }
  if (num_tensors > in.remaining() / min_tensor_info_bytes) {
    fail("tensor count " + std::to_string(num_tensors) + " cannot fit in the " + std::to_string(in.remaining()) +
         " bytes after the header");
  }

  reserve_bounded(metadata_, num_kvs, in.remaining());
  for (uint64_t i = 0; i < num_kvs; ++i) {
    std::string key = in.read_string("key of metadata entry " + std::to_string(i));
    if (metadata_index_.count(key) != 0) fail("duplicate metadata key " + quoted(key));
    value v = read_value(in, key);
    metadata_index_.emplace(key, metadata_.size());
    metadata_.emplace_back(std::move(key), std::move(v));
  }

  alignment_ = default_alignment;
  if (const value* a = find("general.alignment")) {
    const auto* as_int = std::get_if<int64_t>(&a->data);
    const auto* as_uint = std::get_if<uint64_t>(&a->data);
    if (as_int == nullptr && as_uint == nullptr) {
      fail("general.alignment must be an integer, not " + std::string(to_string(a->type)));
    }
    const uint64_t alignment = as_uint ? *as_uint : static_cast<uint64_t>(*as_int);
    if (as_int && *as_int < 0) fail("general.alignment is negative (" + std::to_string(*as_int) + ")");
    if (alignment == 0 || !std::has_single_bit(alignment)) {
      fail("general.alignment must be a non-zero power of two, got " + std::to_string(alignment));
    }
    alignment_ = alignment;
  }

  reserve_bounded(tensors_, num_tensors, in.remaining());
  for (uint64_t i = 0; i < num_tensors; ++i) {
    tensor_info t{};
    t.name = in.read_string("name of tensor " + std::to_string(i));
    const std::string what = "tensor " + quoted(t.name);
    if (tensor_index_.count(t.name) != 0) fail("duplicate tensor name " + quoted(t.name));
    const auto num_dims = in.read<uint32_t>(what);
    if (num_dims == 0 || num_dims > 4) {
      fail(what + ": " + std::to_string(num_dims) + " dimensions (must be 1 to 4)");
    }
    t.num_dims = static_cast<int>(num_dims);
    t.dims = {1, 1, 1, 1};
    int64_t num_elements = 1;
    for (uint32_t d = 0; d < num_dims; ++d) {
      const auto dim = in.read<uint64_t>(what);
      if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        fail(what + ": dimension " + std::to_string(d) + " is " + std::to_string(static_cast<int64_t>(dim)) +
             " (must be positive)");
      }
      t.dims[d] = static_cast<int64_t>(dim);
      if (t.dims[d] > std::numeric_limits<int64_t>::max() / num_elements) {
        fail(what + ": the element count overflows int64");
      }
      num_elements *= t.dims[d];
    }
    const auto type_id = in.read<uint32_t>(what);
    const auto traits = traits_of(type_id);
    if (!traits) fail(what + ": unknown tensor type id " + std::to_string(type_id));
    t.type = static_cast<ggml_type>(type_id);
    if (t.dims[0] % traits->block_elements != 0) {
      fail(what + ": dims[0] = " + std::to_string(t.dims[0]) + " is not a multiple of the " +
           std::string(traits->name) + " block size " + std::to_string(traits->block_elements));
    }
    const auto bytes_per_row = row_bytes(t.type, t.dims[0]);
    const uint64_t num_rows = static_cast<uint64_t>(t.num_rows());
    if (!bytes_per_row || (num_rows != 0 && *bytes_per_row > std::numeric_limits<uint64_t>::max() / num_rows)) {
      fail(what + ": the byte size overflows");
    }
    t.num_bytes = *bytes_per_row * num_rows;
    t.offset = in.read<uint64_t>(what);
    if (t.offset % alignment_ != 0) {
      fail(what + ": offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
           std::to_string(alignment_));
    }
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  const auto data_start = align_up(in.position(), alignment_);
  if (!data_start) fail("the data section start overflows with alignment " + std::to_string(alignment_));
  data_offset_ = *data_start;
  if (tensors_.empty()) return;
  if (data_offset_ > size_) {
    fail("the tensor data section starts at " + std::to_string(data_offset_) + ", past the end of the file (" +
         std::to_string(size_) + " bytes)");
  }
  const uint64_t data_bytes = size_ - data_offset_;
  for (auto& t : tensors_) {
    if (t.offset > data_bytes || t.num_bytes > data_bytes - t.offset) {
      const uint64_t start = data_offset_ + t.offset;
      const bool end_overflows = start < t.offset || start > std::numeric_limits<uint64_t>::max() - t.num_bytes;
      fail("tensor " + quoted(t.name) + ": data [" + std::to_string(start) + ", " +
           (end_overflows ? std::string("overflow") : std::to_string(start + t.num_bytes)) +
           ") runs past the end of the file (" + std::to_string(size_) + " bytes)");
    }
    t.data = base_ + data_offset_ + t.offset;
  }
  std::vector<const tensor_info*> by_offset;
  by_offset.reserve(tensors_.size());
  for (const auto& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const tensor_info* a, const tensor_info* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const tensor_info& prev = *by_offset[i - 1];
    const tensor_info& next = *by_offset[i];
    if (next.offset < prev.offset + prev.num_bytes) {
      fail("tensor " + quoted(next.name) + ": data at offset " + std::to_string(next.offset) +
           " overlaps tensor " + quoted(prev.name) + " [" + std::to_string(prev.offset) + ", " +
           std::to_string(prev.offset + prev.num_bytes) + ")");
    }
    // Writers place tensors back to back, each padded to the alignment. More room than that
    // before the next tensor means the size read from the type and shape is not the size
    // written: most likely a type id changed to a smaller type, which would load garbage.
    const auto padded_end = align_up(prev.offset + prev.num_bytes, alignment_);
    if (padded_end && next.offset > *padded_end) {
      fail("tensor " + quoted(prev.name) + ": its type " + std::string(traits_of(prev.type).name) + " and shape make " +
           std::to_string(prev.num_bytes) + " bytes, but the file holds " + std::to_string(next.offset - prev.offset) +
           " bytes for it before tensor " + quoted(next.name) + " (was its type changed?)");
    }
  }
}

const value* file::find(std::string_view key) const {
  const auto it = metadata_index_.find(std::string(key));
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

const tensor_info* file::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

[[noreturn]] void wrong_type(std::string_view key, const value& v, std::string_view wanted) {
  fail("metadata key " + quoted(key) + " is " + std::string(to_string(v.type)) + ", expected " + std::string(wanted));
}

}  // namespace

std::optional<int64_t> file::get_int(std::string_view key) const {
  const value* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (const auto* i = std::get_if<int64_t>(&v->data)) return *i;
  if (const auto* u = std::get_if<uint64_t>(&v->data)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail("metadata key " + quoted(key) + " = " + std::to_string(*u) + " does not fit in int64");
    }
    return static_cast<int64_t>(*u);
  }
  wrong_type(key, *v, "an integer");
}

std::optional<double> file::get_float(std::string_view key) const {
  const value* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (const auto* f = std::get_if<double>(&v->data)) return *f;
  if (const auto* i = std::get_if<int64_t>(&v->data)) return static_cast<double>(*i);
  if (const auto* u = std::get_if<uint64_t>(&v->data)) return static_cast<double>(*u);
  wrong_type(key, *v, "a number");
}

std::optional<bool> file::get_bool(std::string_view key) const {
  const value* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (const auto* b = std::get_if<bool>(&v->data)) return *b;
  wrong_type(key, *v, "bool");
}

std::optional<std::string> file::get_string(std::string_view key) const {
  const value* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (const auto* s = std::get_if<std::string>(&v->data)) return *s;
  wrong_type(key, *v, "string");
}

const array_value* file::get_array(std::string_view key) const {
  const value* v = find(key);
  if (v == nullptr) return nullptr;
  if (const auto* a = std::get_if<array_value>(&v->data)) return a;
  wrong_type(key, *v, "array");
}

}  // namespace troupe::gguf
