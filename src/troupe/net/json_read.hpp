// json_read: typed reads of simdjson on-demand values for the request parsers. A value of the
// wrong type or range throws parse_failure carrying the api_error that names the field; text
// that is not JSON throws one with code invalid_json.
#pragma once
#include <simdjson.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "troupe/net/api_error.hpp"
#include "troupe/net/json_writer.hpp"

namespace troupe::net::json_read {

using simdjson::ondemand::array;
using simdjson::ondemand::object;
using simdjson::ondemand::value;

// Thrown while reading; the parse functions catch it and return the error as a value.
struct parse_failure {
  api_error error;
};

[[noreturn]] void fail(api_error e);
[[noreturn]] void fail_request(std::string message, std::string_view param);
// The text at or inside field is not JSON (a bad literal, escape, number or structure).
[[noreturn]] void fail_malformed(std::string_view field, simdjson::error_code code);

// Values read as they are read in the request: a wrong type names the field and what was
// sent ("temperature must be a number, got a string"). Integers written with a zero
// fraction (1.0) are taken; 1.5 is not.
simdjson::ondemand::json_type type_of(value& v, std::string_view field);
bool is_null(value& v, std::string_view field);
double read_double(value& v, std::string_view field);
float read_float(value& v, std::string_view field);
int64_t read_int64(value& v, std::string_view field);
int32_t read_int32(value& v, std::string_view field);
uint64_t read_uint64(value& v, std::string_view field);  // negatives refused
bool read_bool(value& v, std::string_view field);
std::string_view read_string_view(value& v, std::string_view field);  // valid until the next parse
std::string read_string(value& v, std::string_view field);
object read_object(value& v, std::string_view field);
array read_array(value& v, std::string_view field);

// Writes v to w, checking every part of it (the on-demand parser checks values only as they
// are read); refuses nesting deeper than max_depth.
void copy_value(value& v, std::string_view field, json_writer& w, int max_depth);

// Calls on_field(key, value) for each member of obj, refusing a key given twice.
template <typename on_field_fn>
void for_each_field(object obj, std::string_view where, on_field_fn&& on_field);
// Calls on_element(index, value) for each element of arr.
template <typename on_element_fn>
void for_each_element(array arr, std::string_view where, on_element_fn&& on_element);

// The keys of one object seen so far; a key given twice is an error (its meaning would depend
// on which parser read it). Holds views into the parser's string buffer: simdjson's on-demand
// parser unescapes every key to a fresh place in that buffer and reuses it only at the next
// document, so the views stay valid while the object is read.
//
// Linear in the number of keys: a client controls how many keys an object has (a 1 MiB body
// holds 100,000), and a search per key made that quadratic on the io thread.
class key_set {
 public:
  void insert(std::string_view key, std::string_view where);

 private:
  // Objects of the protocol have a handful of keys: a scan of a few views is cheaper than
  // hashing; past small_size the keys move to the hash set.
  static constexpr size_t small_size = 16;
  struct counted_equal {
    bool operator()(std::string_view a, std::string_view b) const;
  };
  std::vector<std::string_view> small_;
  std::unordered_set<std::string_view, std::hash<std::string_view>, counted_equal> large_;
};

// Key comparisons made by the duplicate-key checks on this thread so far: tests read it to
// check that the work stays linear in the number of keys.
uint64_t num_key_comparisons();

// One per thread (parsers are not thread-safe; reuse keeps their buffers): parses a document
// whose top level must be an object.
class document_reader {
 public:
  // Throws parse_failure: invalid_json when text is not JSON, invalid_request when it is JSON
  // but not an object. The object lives until the next open_object on this reader.
  object open_object(std::string_view text, std::string_view what);
  // Throws parse_failure unless the object read was the whole text.
  void expect_end();

 private:
  simdjson::ondemand::parser parser_;
  std::string buffer_;  // the text and simdjson's padding
  simdjson::ondemand::document doc_;
};

document_reader& thread_document_reader();

template <typename on_field_fn>
void for_each_field(object obj, std::string_view where, on_field_fn&& on_field) {
  key_set seen;
  for (auto field : obj) {
    std::string_view key;
    if (const auto ec = field.unescaped_key().get(key)) fail_malformed(where, ec);
    seen.insert(key, where);
    value v;
    if (const auto ec = field.value().get(v)) fail_malformed(where, ec);
    on_field(key, v);
  }
}

template <typename on_element_fn>
void for_each_element(array arr, std::string_view where, on_element_fn&& on_element) {
  size_t index = 0;
  for (auto element : arr) {
    value v;
    if (const auto ec = element.get(v)) fail_malformed(where, ec);
    on_element(index++, v);
  }
}

// "field[index]", for messages naming one element.
std::string indexed(std::string_view field, size_t index);

}  // namespace troupe::net::json_read
