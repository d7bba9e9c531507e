// minidl — the console copied to a file: `train` keeps what it prints in RUN_DIR/train.log. The
// Trainer knows nothing of it; the command installs it around a run.
#pragma once

#include <cstdio>
#include <string>

#include "core/file_io.hpp"

namespace minidl::app {

/// While alive, stdout and stderr are glibc cookie streams (fopencookie) that write everything
/// through to file descriptors 1 and 2, as before, and copy each complete line to a LogFile
/// (core/file_io.hpp): the text a carriage return sends back over (a progress bar's updates)
/// and terminal escape sequences are dropped, so the file holds the lines as they stand on the
/// screen, trailing blanks removed. Lines are held in memory until open() (train: the run's
/// first commit, so a refused or failed run leaves the folder as it was). Output written to the
/// descriptors directly (a signal handler's line, child processes) is not copied. A copy that
/// fails (a full disk) ends the copying with one warning on stderr, never the command. One at a
/// time; the destructor flushes and puts the original streams back.
class ConsoleLog {
 public:
  explicit ConsoleLog(const std::string& path);
  ~ConsoleLog();
  ConsoleLog(const ConsoleLog&) = delete;
  ConsoleLog& operator=(const ConsoleLog&) = delete;

  /// Writes the held lines to the file (replacing it, or appending with `append`) and appends
  /// every later line at once. A second call does nothing. A file that cannot be written gives
  /// one warning on stderr and no copy.
  void open(bool append);
  /// Adds `line` (and a newline) to the file only, not to the screen (the error line the
  /// command's caller prints after this object is gone).
  void log_only(const std::string& line);

  /// One stream's state (public for the C callbacks of apps/console_log.cpp).
  struct Stream {
    ConsoleLog* owner = nullptr;
    int fd = -1;
    std::string line;  ///< the current line as it stands
    int escape = 0;    ///< 0: text; 1: after ESC; 2: inside a CSI sequence (ESC [ ...)
  };
  /// Copies `n` bytes printed on `s` into its line, handing complete lines to the file.
  void take(Stream& s, const char* text, size_t n);

 private:
  void copy(const std::string& text);
  /// Stops copying the console (a write or open failed) and says so, once, on stderr.
  void give_up(const std::string& warning);
  LogFile file_;
  bool failed_ = false;
  Stream out_, err_;
  FILE* saved_out_ = nullptr;
  FILE* saved_err_ = nullptr;
};

}  // namespace minidl::app
