// minidl fuzz harnesses — the readers under test take a path, so each harness writes its input
// to one scratch file per process and passes that path.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace minidl::fuzz {

/// The folder scratch files go to: $MINIDL_FUZZ_TMPDIR if set, else /dev/shm (RAM) when it
/// exists, else the system's temporary directory.
inline std::filesystem::path scratch_root() {
  namespace fs = std::filesystem;
  if (const char* d = std::getenv("MINIDL_FUZZ_TMPDIR"); d && *d) return d;
  if (std::error_code ec; fs::is_directory("/dev/shm", ec)) return "/dev/shm";
  return fs::temp_directory_path();
}

/// Replaces the file `path` with `size` bytes from `data`. Throws std::runtime_error if it
/// cannot be written (a problem of the machine, not a finding).
inline void write_file(const std::string& path, const uint8_t* data, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw std::runtime_error("fuzz: cannot write " + path);
  const size_t put = size ? std::fwrite(data, 1, size, f) : 0;
  const bool ok = std::fclose(f) == 0 && put == size;
  if (!ok) throw std::runtime_error("fuzz: short write to " + path);
}

/// A scratch folder "<scratch_root>/minidl_fuzz_<name>_<pid>", removed with its files when the
/// process exits normally.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name)
      : path_((scratch_root() / ("minidl_fuzz_" + name + "_" + std::to_string(::getpid())))
                  .string()) {
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// A scratch file "<dir>/minidl_fuzz_<name>_<pid><ext>", rewritten for every input and removed
/// when the process exits normally. <dir> is $MINIDL_FUZZ_TMPDIR if set, else /dev/shm (RAM)
/// when it exists, else the system's temporary directory.
class InputFile {
 public:
  InputFile(const std::string& name, const std::string& ext) {
    namespace fs = std::filesystem;
    fs::path dir;
    if (const char* d = std::getenv("MINIDL_FUZZ_TMPDIR"); d && *d) {
      dir = d;
    } else if (std::error_code ec; fs::is_directory("/dev/shm", ec)) {
      dir = "/dev/shm";
    } else {
      dir = fs::temp_directory_path();
    }
    path_ = (dir / ("minidl_fuzz_" + name + "_" + std::to_string(::getpid()) + ext)).string();
  }
  ~InputFile() { std::remove(path_.c_str()); }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  /// Replaces the file's contents with `size` bytes from `data`; returns the path. Throws
  /// std::runtime_error if the file cannot be written (a harness lets that escape: it is a
  /// problem of the machine, not a finding).
  const std::string& write(const uint8_t* data, size_t size) {
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    if (!f) throw std::runtime_error("fuzz: cannot write " + path_);
    const size_t put = size ? std::fwrite(data, 1, size, f) : 0;
    const bool ok = std::fclose(f) == 0 && put == size;
    if (!ok) throw std::runtime_error("fuzz: short write to " + path_);
    return path_;
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// Stops the process (a finding) when a reader returned normally with a result that breaks its
/// documented contract.
[[noreturn]] inline void contract_broken(const char* what) {
  std::fprintf(stderr, "fuzz: contract broken: %s\n", what);
  std::abort();
}

}  // namespace minidl::fuzz
