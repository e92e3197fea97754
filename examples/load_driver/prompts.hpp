// Where prompts come from: synthetic text of a chosen token length, or the lines of a file
// of real prompts. The driver has no tokenizer, so synthetic prompts are built from words
// that BPE vocabularies hold as one token each (" the", " water"); the server's
// usage.prompt_tokens is the measured truth and the report shows its mean.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace troupe::load {

// A prompt of about num_tokens tokens: num_tokens words drawn from the word list by seed.
std::string synthetic_prompt(int64_t num_tokens, uint64_t seed);

// The word list synthetic prompts draw from (each a single token in BPE vocabularies when
// preceded by a space).
const std::vector<std::string>& prompt_words();

struct prompt_entry {
  std::string text;
  std::optional<int64_t> output_tokens;  // when the file says how long the answer should be
};

// Reads a prompt file, one prompt per line; blank lines are skipped. A line is one of:
//   {"prompt": "...", "output_tokens": 128}   (a JSON object; output_tokens optional)
//   "a JSON string, with \n escapes"
//   plain text up to the end of the line
// Throws workload_error naming the file and line at fault.
std::vector<prompt_entry> load_prompt_file(const std::string& path);
std::vector<prompt_entry> parse_prompt_lines(const std::string& text, const std::string& source_name);

}  // namespace troupe::load
