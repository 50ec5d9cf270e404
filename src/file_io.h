// File handling for the CLI: whole-file reads with typed errors, and output
// files that appear only when complete (temporary file + rename), removed on
// error and on SIGINT/SIGTERM/SIGHUP.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace shazip {

// Reads a whole file ("-" is standard input). Throws Error(kIo) with the
// system's reason (missing, directory, permission, ...).
std::vector<uint8_t> read_file(const std::string& path);

bool is_terminal(int fd);

// Memory this process can still take, in bytes: the kernel's MemAvailable,
// or less where a cgroup (v2) limit or the process's own limits (ulimit -v,
// ulimit -d) leave less; UINT64_MAX when unknown.
uint64_t available_memory();

// Memory this process could ever take, in bytes (UINT64_MAX when unknown),
// and what sets it, for messages ("this machine has" and so on): the
// machine's MemTotal, or where lower a cgroup (v2) limit, or what the
// process's soft limits on its address space (ulimit -v) and its data
// (ulimit -d) leave beside what it has mapped already. A plan above it
// cannot run whatever else is freed.
struct MemoryCeiling {
  uint64_t bytes = UINT64_MAX;
  const char* limited_by = "this machine has";
};
MemoryCeiling memory_ceiling();

// Throws unless `path` may be written as an output: an existing directory is
// an I/O error, an existing regular file needs `force`. Devices and pipes
// (/dev/null, a FIFO) are always allowed. "-" (standard output) always is.
// OutputFile applies the same rule; callers use it to refuse before the work.
void check_output(const std::string& path, bool force);

// Installs SIGINT/SIGTERM/SIGHUP handlers that remove the output in progress.
void install_signal_cleanup();

// An output file written under a temporary name in the target directory and
// renamed over `path` by commit(). Destroyed uncommitted, it removes the
// temporary. "-" writes to standard output directly.
class OutputFile {
 public:
  OutputFile(const std::string& path, bool force);
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  void write(const uint8_t* data, size_t size);
  // Gives the output the permission bits and access/modification times of
  // the regular file `source` (as gzip and zstd do). No-op for standard
  // output, devices and non-regular sources.
  void copy_metadata_from(const std::string& source);
  void commit();

 private:
  std::string path_, temp_;
  int fd_ = -1;
  bool committed_ = false;
  bool direct_ = false;  // existing device or pipe, written in place
};

}  // namespace shazip
