// Synthetic prompts from a one-token-per-word list, and prompt files read line by line.
#include "prompts.hpp"

#include <simdjson.h>

#include <fstream>
#include <sstream>

#include "random.hpp"
#include "workload.hpp"

namespace troupe::load {

const std::vector<std::string>& prompt_words() {
  // Common English words, each one token with a leading space in GPT-2-style and
  // SentencePiece-style BPE vocabularies (checked against SmolLM2's with llama-tokenize).
  static const std::vector<std::string> words = {
      "about", "after", "all", "also", "an", "and", "another", "any", "are", "area", "as",
      "at", "be", "because", "been", "before", "being", "best", "between", "book", "both",
      "but", "by", "can", "city", "could", "country", "during", "each", "early", "family",
      "film", "first", "for", "found", "from", "game", "great", "group", "had", "has",
      "have", "he", "her", "high", "him", "his", "house", "in", "into", "is", "it", "its",
      "known", "later", "life", "like", "long", "made", "many", "may", "more", "most",
      "much", "music", "name", "new", "not", "number", "of", "on", "one", "only", "or",
      "other", "out", "over", "own", "part", "people", "place", "power", "same", "school",
      "season", "second", "she", "should", "since", "small", "so", "some", "state", "such",
      "team", "than", "that", "the", "their", "them", "then", "there", "these", "they",
      "this", "three", "through", "time", "to", "two", "under", "until", "up", "used",
      "war", "was", "water", "well", "were", "when", "where", "which", "while", "who",
      "will", "with", "work", "world", "would", "year", "years"};
  return words;
}

std::string synthetic_prompt(int64_t num_tokens, uint64_t seed) {
  const auto& words = prompt_words();
  random_stream rng(seed);
  std::string out;
  for (int64_t i = 0; i < num_tokens; ++i) {
    if (i > 0) out += ' ';
    out += words[rng.next() % words.size()];
  }
  return out;
}

std::vector<prompt_entry> parse_prompt_lines(const std::string& text, const std::string& source_name) {
  simdjson::dom::parser parser;
  std::vector<prompt_entry> out;
  std::istringstream in(text);
  std::string line;
  int64_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = source_name + " line " + std::to_string(line_number);
    const char first = line[line.find_first_not_of(" \t")];
    if (first != '{' && first != '"') {
      out.push_back({line, std::nullopt});
      continue;
    }
    simdjson::dom::element e;
    if (const auto err = parser.parse(line).get(e)) {
      throw workload_error(where + ": not valid JSON (" + simdjson::error_message(err) + ")");
    }
    prompt_entry entry;
    std::string_view s;
    if (!e.get_string().get(s)) {
      entry.text = std::string(s);
    } else {
      simdjson::dom::object o;
      if (e.get_object().get(o)) throw workload_error(where + ": must be an object or a string");
      for (auto field : o) {
        if (field.key == "prompt") {
          if (field.value.get_string().get(s)) throw workload_error(where + ": prompt must be a string");
          entry.text = std::string(s);
        } else if (field.key == "output_tokens") {
          int64_t n = 0;
          if (field.value.get_int64().get(n) || n < 1) {
            throw workload_error(where + ": output_tokens must be an integer >= 1");
          }
          entry.output_tokens = n;
        } else {
          throw workload_error(where + ": unknown field " + std::string(field.key) +
                               " (allowed: prompt, output_tokens)");
        }
      }
    }
    if (entry.text.empty()) throw workload_error(where + ": prompt is missing or empty");
    out.push_back(std::move(entry));
  }
  if (out.empty()) throw workload_error(source_name + ": holds no prompts");
  return out;
}

std::vector<prompt_entry> load_prompt_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw workload_error("prompt.file: cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return parse_prompt_lines(text.str(), path);
}

}  // namespace troupe::load
