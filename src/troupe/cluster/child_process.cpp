#include "troupe/cluster/child_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cstring>
#include <thread>

#include "troupe/model/error.hpp"

extern char** environ;

namespace troupe::cluster {

namespace {

// Between fork and exec only async-signal-safe calls: everything is prepared before.
[[noreturn]] void exec_child(pid_t parent, int out_fd, const std::vector<char*>& argv,
                             const std::vector<char*>& envp) {
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
  ::setpgid(0, 0);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);  // the parent blocks SIGTERM for its sigwait
  const int null_fd = ::open("/dev/null", O_RDONLY);
  if (null_fd >= 0) ::dup2(null_fd, 0);
  ::dup2(out_fd, 1);
  // The parent's listening sockets and connections must not live on in the child.
  if (::syscall(SYS_close_range, 3u, ~0u, 0u) != 0) {
    for (int fd = 3; fd < 65536; ++fd) ::close(fd);
  }
  ::execve(argv[0], argv.data(), envp.data());
  const char msg[] = "troupe: cannot execute the worker command\n";
  [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
  ::_exit(127);
}

}  // namespace

std::shared_ptr<child_process> child_process::start(const launch_spec& spec, std::function<void(std::string)> on_line,
                                                    std::function<void(int)> on_exit) {
  if (spec.argv.empty()) throw error(error_code::invalid_argument, "an empty command");
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    bool overridden = false;
    for (const auto& [name, value] : spec.env) overridden = overridden || entry.rfind(name + "=", 0) == 0;
    if (!overridden) env_strings.push_back(entry);
  }
  for (const auto& [name, value] : spec.env) env_strings.push_back(name + "=" + value);
  std::vector<std::string> args = spec.argv;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    throw error(error_code::internal, std::string("cannot make a pipe: ") + std::strerror(errno));
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int e = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    throw error(error_code::internal, std::string("cannot fork: ") + std::strerror(e));
  }
  if (pid == 0) exec_child(parent, fds[1], argv, envp);
  ::close(fds[1]);
  auto exited = std::make_shared<std::atomic<bool>>(false);
  // Two threads: a command may leave a process behind that holds its stdout open (a worker
  // it started in the background), so the exit cannot wait for the end of the output.
  struct reading {
    std::mutex mutex;
    std::condition_variable cv;
    bool is_done = false;
  };
  auto read_state = std::make_shared<reading>();
  std::thread([fd = fds[0], read_state, on_line = std::move(on_line)] {
    std::string pending;
    char buf[4096];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      pending.append(buf, static_cast<size_t>(n));
      for (size_t eol; (eol = pending.find('\n')) != std::string::npos;) {
        on_line(pending.substr(0, eol));
        pending.erase(0, eol + 1);
      }
      if (pending.size() > 65536) pending.clear();  // a runaway line is nobody's address
    }
    ::close(fd);
    if (!pending.empty()) on_line(pending);
    std::lock_guard lock(read_state->mutex);
    read_state->is_done = true;
    read_state->cv.notify_all();
  }).detach();
  std::thread([pid, exited, read_state, on_exit = std::move(on_exit)] {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    exited->store(true);
    {
      // The lines it printed before exiting come first (both threads message one actor).
      std::unique_lock lock(read_state->mutex);
      read_state->cv.wait_for(lock, std::chrono::milliseconds(500), [&] { return read_state->is_done; });
    }
    on_exit(status);
  }).detach();
  return std::make_shared<child_process>(pid, std::move(exited));
}

void child_process::signal(int sig) const {
  if (exited_->load()) return;
  ::kill(-pid_, sig);  // its process group (the child called setpgid(0, 0))
  ::kill(pid_, sig);   // in case it had not yet
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

}  // namespace troupe::cluster
