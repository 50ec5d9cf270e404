// Typed errors for bad input (the second error tier of docs/DESIGN.md). Each
// carries a stable code that the CLI maps to its documented exit status.
#pragma once

#include <stdexcept>
#include <string>

namespace shazip {

enum class ErrorCode : int {
  kUsage = 1,            // bad command line
  kIo = 2,               // missing file, directory, permission, disk full, ...
  kNotArchive = 3,       // no shazip magic
  kTruncated = 4,        // archive ends early
  kCorrupt = 5,          // malformed header or payload, checksum mismatch
  kVersion = 6,          // newer format version than this build reads
  kBackend = 7,          // made on a backend this build cannot reproduce
};
// Killed by a signal (SIGINT, SIGTERM, SIGHUP): the handler removes the
// partial output and re-raises, so the exit status is the shell's 128 + N.

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& what) : std::runtime_error(what), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace shazip
