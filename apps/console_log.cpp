#include "apps/console_log.hpp"

#include <unistd.h>

#include <cerrno>
#include <stdexcept>

namespace minidl::app {

namespace {

/// write(2) of all `n` bytes (EINTR retried); false on an error.
bool write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

/// The cookie stream's write: the bytes to the descriptor as they are, then to the line copy.
ssize_t cookie_write(void* cookie, const char* buf, size_t size) {
  auto* s = static_cast<ConsoleLog::Stream*>(cookie);
  if (!write_all(s->fd, buf, size)) return -1;
  s->owner->take(*s, buf, size);
  return static_cast<ssize_t>(size);
}

int cookie_close(void*) { return 0; }  // the descriptors stay open

FILE* open_stream(ConsoleLog::Stream& s, int mode) {
  cookie_io_functions_t io{};
  io.write = cookie_write;
  io.close = cookie_close;
  FILE* f = fopencookie(&s, "w", io);
  if (!f) throw std::runtime_error("cannot copy the console to a file (fopencookie failed)");
  std::setvbuf(f, nullptr, mode, mode == _IONBF ? 0 : BUFSIZ);
  return f;
}

constexpr size_t kMaxLine = 1 << 16;  // longer lines are cut in the copy (not on screen)

}  // namespace

ConsoleLog::ConsoleLog(const std::string& path) : file_(path) {
  std::fflush(stdout);
  std::fflush(stderr);
  out_ = {this, STDOUT_FILENO, {}, 0};
  err_ = {this, STDERR_FILENO, {}, 0};
  // Buffered as the standard streams are: stdout by line on a terminal, else in blocks (the
  // commands flush after each line); stderr not at all.
  FILE* out = open_stream(out_, isatty(STDOUT_FILENO) ? _IOLBF : _IOFBF);
  FILE* err = open_stream(err_, _IONBF);
  saved_out_ = stdout;
  saved_err_ = stderr;
  stdout = out;
  stderr = err;
}

ConsoleLog::~ConsoleLog() {
  FILE* out = stdout;
  FILE* err = stderr;
  std::fflush(out);
  stdout = saved_out_;
  stderr = saved_err_;
  std::fclose(out);
  std::fclose(err);
}

void ConsoleLog::take(Stream& s, const char* text, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const char c = text[i];
    if (s.escape == 1) {  // ESC: a CSI sequence if '[' follows, else one character skipped
      s.escape = c == '[' ? 2 : 0;
    } else if (s.escape == 2) {  // CSI parameters until a final byte in @..~
      if (c >= '@' && c <= '~') s.escape = 0;
    } else if (c == '\x1b') {
      s.escape = 1;
    } else if (c == '\r') {
      s.line.clear();  // what follows is written over it
    } else if (c == '\n') {
      std::string line;
      line.swap(s.line);
      while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.pop_back();
      copy(line + "\n");
    } else if (s.line.size() < kMaxLine) {
      s.line.push_back(c);
    }
  }
}

void ConsoleLog::give_up(const std::string& warning) {
  failed_ = true;
  const std::string text = warning + "\n";
  write_all(STDERR_FILENO, text.data(), text.size());
}

void ConsoleLog::copy(const std::string& text) {
  if (failed_) return;
  try {
    file_.write(text);
  } catch (const std::exception& e) {
    give_up(std::string("minidl: warning: ") + e.what() +
            "; the console is no longer copied there");
  }
}

void ConsoleLog::open(bool append) {
  if (failed_ || file_.is_open()) return;
  std::fflush(stdout);  // lines still in the stream's buffer first
  try {
    file_.open(append);
  } catch (const std::exception& e) {
    give_up(std::string("minidl: warning: the console is not copied to a file: ") + e.what());
  }
}

void ConsoleLog::log_only(const std::string& line) { copy(line + "\n"); }

}  // namespace minidl::app
