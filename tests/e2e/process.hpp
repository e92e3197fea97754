// Runs a command the way a user would (through /bin/sh) and captures its stdout, stderr
// and exit status, for end-to-end tests of the real `troupe` binary.
#pragma once
#include <string>

namespace troupe::test {

struct process_result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `command` with stdin from /dev/null (or `input` when given).
process_result run_process(const std::string& command, const std::string& input = "");

}  // namespace troupe::test
