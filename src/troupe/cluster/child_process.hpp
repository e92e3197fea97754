// A child process the autoscaler started (a local `troupe worker`, or a user's worker or
// stop command): its stdout is read line by line on a thread of its own, and it is reaped
// on another. The child dies with the parent: PR_SET_PDEATHSIG(SIGTERM), sent when the
// thread that forked it ends, so start() must be called on a thread that lives as long as
// the process (an actor system's scheduler thread does). It runs in a process group of its
// own, which terminate() and kill() signal as a whole.
#pragma once
#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace troupe::cluster {

struct launch_spec {
  std::vector<std::string> argv;                            // argv[0] is executed as is (no PATH search)
  std::vector<std::pair<std::string, std::string>> env;     // set in the child's environment
};

class child_process {
 public:
  // Forks and execs spec. The child's stdin is /dev/null, its stdout a pipe read here (each
  // line to on_line, newline removed), its stderr the parent's; every other descriptor is
  // closed. on_exit gets waitpid's status once the child is reaped (after the lines it
  // printed, unless something it left behind holds its stdout open for over 500 ms).
  // They run on the two threads of the child. Throws troupe::error(internal) if it cannot fork.
  static std::shared_ptr<child_process> start(const launch_spec& spec, std::function<void(std::string)> on_line,
                                              std::function<void(int)> on_exit);
  ~child_process() = default;

  pid_t pid() const { return pid_; }
  bool has_exited() const { return exited_->load(); }
  // SIGTERM / SIGKILL to its process group; nothing once it has been reaped.
  void terminate() const { signal(15); }
  void kill() const { signal(9); }

  child_process(pid_t pid, std::shared_ptr<std::atomic<bool>> exited) : pid_(pid), exited_(std::move(exited)) {}

 private:
  void signal(int sig) const;
  pid_t pid_;
  std::shared_ptr<std::atomic<bool>> exited_;
};

// How a waitpid status reads in a log: "exit 0", "signal 9".
std::string describe_exit(int status);

}  // namespace troupe::cluster
