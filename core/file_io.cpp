#include "core/file_io.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

namespace minidl {

namespace {

/// write_file_atomic's temporaries: "<name>.tmp-" and mkostemp's six characters.
constexpr const char* kTempInfix = ".tmp-";
constexpr size_t kTempSuffix = 6;

std::string folder_of(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes) {
  std::string tmp = path + kTempInfix + std::string(kTempSuffix, 'X');
  auto fail = [](const std::string& what, const std::string& file) {
    const std::string reason = std::strerror(errno);
    return std::runtime_error(what + " \"" + file + "\": " + reason);
  };
  // O_EXCL (mkostemp): a fresh name in the target folder, never an existing file or link.
  const int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) throw fail("cannot write", path + kTempInfix + "XXXXXX");
  auto abandon = [&](const std::runtime_error& e) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return e;
  };
  if (::fchmod(fd, 0644) != 0) throw abandon(fail("cannot set the mode of", tmp));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw abandon(fail("write failed for", tmp));
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0) throw abandon(fail("fsync failed for", tmp));
  if (::close(fd) != 0) {
    const auto e = fail("close failed for", tmp);
    ::unlink(tmp.c_str());
    throw e;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const auto e = fail("cannot rename \"" + tmp + "\" to", path);
    ::unlink(tmp.c_str());
    throw e;
  }
  // The rename itself is durable once the folder's entry is on disk.
  const int dfd = ::open(folder_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

bool is_atomic_temporary(const std::string& name) {
  const size_t infix = std::strlen(kTempInfix);
  if (name.size() < infix + kTempSuffix + 1) return false;
  return name.compare(name.size() - kTempSuffix - infix, infix, kTempInfix) == 0;
}

int remove_stale_temporaries(const std::string& dir) {
  int removed = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code ec2;
    if (is_atomic_temporary(it->path().filename().string()) &&
        it->symlink_status(ec2).type() == std::filesystem::file_type::regular &&
        std::filesystem::remove(it->path(), ec2)) {
      ++removed;
    }
  }
  return removed;
}

RegularFile::RegularFile(const std::string& path, const std::string& what)
    : path_(path), what_(what) {
  const std::string name = what + " \"" + path + "\"";
  fd_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd_ < 0) {
    if (errno == ENOENT) throw std::runtime_error(name + " does not exist");
    throw std::runtime_error(name + " cannot be read: " + std::strerror(errno));
  }
  struct stat st {};
  std::string problem;
  if (::fstat(fd_, &st) != 0)
    problem = std::string(" cannot be read: ") + std::strerror(errno);
  else if (S_ISDIR(st.st_mode))
    problem = " is a folder, expected a file";
  else if (!S_ISREG(st.st_mode))
    problem = " is not a regular file (a FIFO, device or socket); minidl reads only regular files";
  if (!problem.empty()) {
    ::close(fd_);
    throw std::runtime_error(name + problem);
  }
  size_ = static_cast<uint64_t>(st.st_size);
}

RegularFile::~RegularFile() {
  if (fd_ >= 0) ::close(fd_);
}

void RegularFile::read_at(uint64_t offset, void* out, size_t n) const {
  char* p = static_cast<char*>(out);
  while (n > 0) {
    const ssize_t r = ::pread(fd_, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      throw std::runtime_error(what_ + " \"" + path_ +
                               "\" cannot be read: " + std::strerror(errno));
    }
    if (r == 0) {
      throw std::runtime_error(what_ + " \"" + path_ + "\" ended early at byte " +
                               std::to_string(offset) + " (it shrank while being read)");
    }
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

std::string read_small_file(const std::string& path, uint64_t max_bytes, const std::string& what) {
  const RegularFile f(path, what);
  if (f.size() > max_bytes) {
    throw std::runtime_error(what + " \"" + path + "\" is " + std::to_string(f.size()) +
                             " bytes, more than the " + std::to_string(max_bytes) +
                             " minidl reads from such a file");
  }
  std::string text(static_cast<size_t>(f.size()), '\0');
  f.read_at(0, text.data(), text.size());
  return text;
}

namespace {
/// The pid written in a lock file, or -1. The holder writes it right after taking the lock, so
/// an empty file is read again for up to half a second.
long lock_holder(int fd) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    char buf[32] = {0};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    if (n > 0) {
      char* end = nullptr;
      const long pid = std::strtol(buf, &end, 10);
      if (end != buf && pid > 0) return pid;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}
}  // namespace

FileLock::FileLock(const std::string& path) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd_ < 0) {
    const int err = errno;
    throw std::runtime_error(
        "cannot create the lock file \"" + path + "\": " +
        (err == ELOOP ? std::string("it is a symbolic link") : std::string(std::strerror(err))));
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK) {
      const long holder = lock_holder(fd_);
      ::close(fd_);
      throw FileLocked("\"" + path + "\" is locked by another process (pid " +
                           (holder > 0 ? std::to_string(holder) : std::string("unknown")) + ")",
                       holder);
    }
    ::close(fd_);
    throw std::runtime_error("cannot lock \"" + path + "\": " + std::strerror(err));
  }
  const std::string pid = std::to_string(static_cast<long>(::getpid())) + "\n";
  if (::ftruncate(fd_, 0) != 0 ||
      ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int err = errno;
    ::close(fd_);
    throw std::runtime_error("cannot write the lock file \"" + path + "\": " + std::strerror(err));
  }
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

LogFile::~LogFile() {
  if (fd_ >= 0) ::close(fd_);
}

void LogFile::write(const std::string& text) {
  if (fd_ < 0)
    held_ += text;
  else
    append(text);
}

void LogFile::append(const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t w = ::write(fd_, text.data() + done, text.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0)
      throw std::runtime_error("cannot append to \"" + path_ + "\": " + std::strerror(errno));
    done += static_cast<size_t>(w);
  }
}

void LogFile::open(bool append_to_file) {
  if (fd_ >= 0) return;
  std::string text;
  text.swap(held_);
  if (!append_to_file) {
    write_file_atomic(path_, text);
    text.clear();
  }
  // O_NONBLOCK: a FIFO left at the name cannot block the open; it is refused below.
  const int fd = ::open(path_.c_str(),
                        O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0644);
  if (fd < 0) {
    throw std::runtime_error("cannot open \"" + path_ + "\" for appending: " +
                             (errno == ELOOP ? std::string("it is a symbolic link")
                                             : std::string(std::strerror(errno))));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw std::runtime_error("cannot append to \"" + path_ +
                             "\": it is not a regular file (a FIFO, device or socket)");
  }
  ::fcntl(fd, F_SETFL, O_APPEND);  // blocking writes from here on
  fd_ = fd;
  append(text);
}

int json_nesting_depth(const std::string& text) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

}  // namespace minidl
