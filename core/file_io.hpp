// minidl — reading and writing files so that nothing already saved is lost and nothing hangs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace minidl {

/// Replaces `path` with `bytes` atomically and durably: writes a new temporary file
/// "<path>.tmp-XXXXXX" in the same folder (mkostemp: created with O_EXCL, so never through an
/// existing name or a symbolic link someone left there), fsyncs it, renames it over `path` and
/// fsyncs the folder (POSIX rename(2) is atomic and replaces a link at `path` rather than
/// writing through it). A crash or kill at any moment leaves either the old file or the new one,
/// never a mix (a SIGKILL mid-write can leave the temporary behind; see
/// remove_stale_temporaries). The file gets mode 0644. Throws std::runtime_error naming the file
/// and the system's reason (strerror) on any failure; the old file stays.
void write_file_atomic(const std::string& path, const std::string& bytes);

/// Whether `name` (a file name, no folder) is one of write_file_atomic's temporaries.
bool is_atomic_temporary(const std::string& name);

/// Removes the regular files in `dir` that write_file_atomic left behind when its process was
/// killed mid-write. Only safe while no other process writes to `dir` (hold its lock). Returns
/// how many were removed; never throws.
int remove_stale_temporaries(const std::string& dir);

/// A file opened for reading that is known to be a regular file: opened with O_NONBLOCK (so a
/// FIFO cannot block the open), then checked with fstat. Every reader of a user's file goes
/// through it (or checks the same way), so a FIFO, a device such as /dev/zero or a folder is
/// refused by name instead of hanging or reading forever.
class RegularFile {
 public:
  /// Throws std::runtime_error whose message starts with `what` and the quoted path: "does not
  /// exist", "cannot be read: <strerror>", "is a folder, expected a file", or "is not a regular
  /// file (a FIFO, device or socket); minidl reads only regular files".
  RegularFile(const std::string& path, const std::string& what);
  ~RegularFile();
  RegularFile(const RegularFile&) = delete;
  RegularFile& operator=(const RegularFile&) = delete;

  /// Size in bytes when opened.
  uint64_t size() const { return size_; }
  /// Reads exactly `n` bytes at `offset` into `out`. Throws std::runtime_error naming the file
  /// on a read error or a short read (the file shrank).
  void read_at(uint64_t offset, void* out, size_t n) const;

 private:
  int fd_ = -1;
  uint64_t size_ = 0;
  std::string path_, what_;
};

/// The whole of the regular file `path`, which must be at most `max_bytes` long (checked with
/// fstat before anything is read or allocated). Throws as RegularFile does, and
/// std::runtime_error "<what> \"<path>\" is N bytes, more than the M minidl reads (...)" when
/// larger.
std::string read_small_file(const std::string& path, uint64_t max_bytes, const std::string& what);

/// A log a run writes a piece at a time (a run folder's log.jsonl and train.log). Until open(),
/// what is written is held in memory, so that a run that fails early, or is refused, leaves the
/// file as it was; open() replaces the file with the held text (write_file_atomic: a new run) or
/// appends it to the file as it is (a continued run; created when missing), and every later
/// write() is appended at once. Appends go through one descriptor opened with O_APPEND and
/// O_NOFOLLOW (never through a symbolic link) and checked to be a regular file; nothing is
/// fsynced. Not thread-safe.
class LogFile {
 public:
  explicit LogFile(std::string path) : path_(std::move(path)) {}
  ~LogFile();
  LogFile(const LogFile&) = delete;
  LogFile& operator=(const LogFile&) = delete;

  /// Holds `text` (before open) or appends it. Throws std::runtime_error naming the file and the
  /// system's reason when an append fails.
  void write(const std::string& text);
  /// Writes the held text to the file (replacing it unless `append`) and keeps it open for
  /// appending. Throws std::runtime_error naming the file when it cannot be written, or is a
  /// link, a folder, a FIFO or a device. A second call does nothing.
  void open(bool append);
  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }

 private:
  void append(const std::string& text);
  std::string path_, held_;
  int fd_ = -1;
};

/// Thrown by FileLock when another process holds the lock.
struct FileLocked : std::runtime_error {
  FileLocked(const std::string& what, long holder) : std::runtime_error(what), holder_pid(holder) {}
  long holder_pid;  ///< the holder's pid as it wrote it into the lock file (-1: unknown)
};

/// An exclusive advisory lock (flock(2)) on a lock file, held until destruction (or until the
/// process ends, however it ends: the kernel releases it). The file is created if needed (never
/// through a symbolic link: O_NOFOLLOW) and holds the holder's pid, which a refused process
/// reports. The descriptor is close-on-exec, so programs started by the holder do not inherit
/// the lock.
class FileLock {
 public:
  /// Takes the lock without waiting. Throws FileLocked naming `path` and the holder's pid when
  /// another process holds it, std::runtime_error naming `path` and the reason on an I/O error.
  explicit FileLock(const std::string& path);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

/// Deepest nesting of JSON arrays and objects in `text`, counted outside strings, without
/// parsing. Readers check it before parsing an outside file, so a crafted file cannot recurse
/// deep in the parser (or in the parsed value's destructor). Never throws.
int json_nesting_depth(const std::string& text);

}  // namespace minidl
