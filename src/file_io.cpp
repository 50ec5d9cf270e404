#include "src/file_io.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>

#include "src/errors.h"

namespace shazip {
namespace {

// The temporary file in progress, for the signal handler. Written only
// outside the handler, with signals that could observe a half-written path
// blocked.
char g_temp_path[4096];
volatile sig_atomic_t g_temp_active = 0;

void on_signal(int sig) {
  if (g_temp_active) unlink(g_temp_path);
  signal(sig, SIG_DFL);
  raise(sig);  // exit with the conventional status 128 + sig
}

void set_active_temp(const std::string& path) {
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGHUP);
  sigprocmask(SIG_BLOCK, &block, &old);
  if (path.empty()) {
    g_temp_active = 0;
  } else {
    std::snprintf(g_temp_path, sizeof g_temp_path, "%s", path.c_str());
    g_temp_active = 1;
  }
  sigprocmask(SIG_SETMASK, &old, nullptr);
}

[[noreturn]] void io_error(int err) { throw Error(ErrorCode::kIo, std::strerror(err)); }

}  // namespace

void check_output(const std::string& path, bool force) {
  struct stat st;
  if (path == "-" || stat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) throw Error(ErrorCode::kIo, "output " + path + " is a directory");
  if (S_ISREG(st.st_mode) && !force) {
    throw Error(ErrorCode::kUsage, "output " + path + " already exists; use -f to overwrite");
  }
}

bool is_terminal(int fd) { return isatty(fd) == 1; }

namespace {

// The first number in `path` after `key` (the whole file when key is empty),
// or nullopt.
std::optional<uint64_t> read_number(const char* path, const std::string& key) {
  std::ifstream in(path);
  std::string word;
  while (in >> word) {
    if (key.empty() || word == key) {
      if (!key.empty() && !(in >> word)) return std::nullopt;
      uint64_t value = 0;  // digits only, and within 64 bits ("max" is no number)
      const char* end = word.data() + word.size();
      const auto [stop, ec] = std::from_chars(word.data(), end, value);
      if (ec != std::errc() || stop != end) return std::nullopt;
      return value;
    }
  }
  return std::nullopt;
}

// What the soft limit `resource` leaves beside `used_key`'s figure in
// /proc/self/status (kB), or UINT64_MAX without a limit.
uint64_t rlimit_left(int resource, const char* used_key) {
  struct rlimit rl;
  if (getrlimit(resource, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return UINT64_MAX;
  const auto kb = read_number("/proc/self/status", used_key);
  const uint64_t used = kb ? *kb * 1024 : 0;
  return rl.rlim_cur > used ? rl.rlim_cur - used : 0;
}

// What the process's own limits leave, the lower of ulimit -v (all it maps)
// and ulimit -d (its data, which from Linux 4.7 includes private mappings
// such as shazip's tables); UINT64_MAX without either.
MemoryCeiling process_limit() {
  MemoryCeiling c{rlimit_left(RLIMIT_AS, "VmSize:"), "the address-space limit (ulimit -v) leaves"};
  const uint64_t data = rlimit_left(RLIMIT_DATA, "VmData:");
  if (data < c.bytes) c = {data, "the data limit (ulimit -d) leaves"};
  return c;
}

}  // namespace

uint64_t available_memory() {
  uint64_t available = UINT64_MAX;
  if (const auto kb = read_number("/proc/meminfo", "MemAvailable:")) available = *kb * 1024;
  // cgroup v2 (containers, systemd slices): memory.max may be "max".
  const auto limit = read_number("/sys/fs/cgroup/memory.max", "");
  const auto used = read_number("/sys/fs/cgroup/memory.current", "");
  if (limit && used) available = std::min(available, *limit > *used ? *limit - *used : 0);
  return std::min(available, process_limit().bytes);
}

MemoryCeiling memory_ceiling() {
  MemoryCeiling c;
  if (const auto kb = read_number("/proc/meminfo", "MemTotal:")) c.bytes = *kb * 1024;
  const auto limit = read_number("/sys/fs/cgroup/memory.max", "");
  if (limit && *limit < c.bytes) c = {*limit, "its cgroup allows"};
  const MemoryCeiling process = process_limit();
  return process.bytes < c.bytes ? process : c;
}

void install_signal_cleanup() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
}

std::vector<uint8_t> read_file(const std::string& path) {
  const bool is_stdin = path == "-";
  const int fd = is_stdin ? STDIN_FILENO : open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) io_error(errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    if (!is_stdin) close(fd);
    io_error(err);
  }
  if (S_ISDIR(st.st_mode)) {
    if (!is_stdin) close(fd);
    throw Error(ErrorCode::kIo, "is a directory");
  }
  std::vector<uint8_t> data;
  if (S_ISREG(st.st_mode)) data.reserve(static_cast<size_t>(st.st_size));
  uint8_t buf[1 << 16];
  for (;;) {
    const ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      if (!is_stdin) close(fd);
      io_error(err);
    }
    if (got == 0) break;
    data.insert(data.end(), buf, buf + got);
  }
  if (!is_stdin) close(fd);
  return data;
}

OutputFile::OutputFile(const std::string& path, bool force) : path_(path) {
  if (path == "-") {
    fd_ = STDOUT_FILENO;
    return;
  }
  check_output(path, force);
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    // A device or pipe (/dev/null, /dev/full, a FIFO): write to it directly.
    fd_ = open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) io_error(errno);
    direct_ = true;
    return;
  }
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  std::string tmpl = dir + "." + base + ".tmpXXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  fd_ = mkstemp(buf.data());
  if (fd_ < 0) io_error(errno);
  temp_ = buf.data();
  set_active_temp(temp_);
  // mkstemp creates mode 0600; give the file the mode a plain open would.
  const mode_t mask = umask(0);
  umask(mask);
  fchmod(fd_, 0666 & ~mask);
}

OutputFile::~OutputFile() {
  if (fd_ >= 0 && fd_ != STDOUT_FILENO) close(fd_);
  if (direct_) return;
  if (!temp_.empty() && !committed_) {
    unlink(temp_.c_str());
    set_active_temp("");
  }
}

void OutputFile::write(const uint8_t* data, size_t size) {
  while (size > 0) {
    const ssize_t put = ::write(fd_, data, size);
    if (put < 0) {
      if (errno == EINTR) continue;
      io_error(errno);
    }
    data += put;
    size -= static_cast<size_t>(put);
  }
}

void OutputFile::copy_metadata_from(const std::string& source) {
  if (temp_.empty() || source == "-") return;
  struct stat st;
  if (stat(source.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return;
  // Best effort, like gzip: a failure here does not fail the command.
  (void)fchmod(fd_, st.st_mode & 07777);
  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  (void)futimens(fd_, times);
}

void OutputFile::commit() {
  if (fd_ == STDOUT_FILENO || direct_) {
    committed_ = true;
    return;
  }
  if (fsync(fd_) != 0) io_error(errno);  // a full disk may only show here
  if (close(fd_) != 0) {
    fd_ = -1;
    io_error(errno);
  }
  fd_ = -1;
  if (rename(temp_.c_str(), path_.c_str()) != 0) io_error(errno);
  committed_ = true;
  set_active_temp("");
}

}  // namespace shazip
