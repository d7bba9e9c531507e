// minidl — the progress line of a run on a terminal: one line on stderr, redrawn in place ('\r')
// and cut to the terminal's width so that it never wraps; cleared before any other output, and by
// the SIGINT/SIGTERM handler of `train` (apps/cmd_train.cpp) before its last line. When stderr
// is not a terminal nothing is drawn and the commands print only their plain lines.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace minidl::app {

/// Whether progress lines are drawn: stderr is a terminal and $TERM is not "dumb". Decided once.
bool progress_enabled();

/// The terminal's width in columns (stderr's, then $COLUMNS; 80 if neither is known).
int terminal_columns();

/// Replaces the progress line on screen by `text` (one line, cut to terminal_columns() - 1).
/// Does nothing unless progress_enabled().
void draw_progress(const std::string& text);

/// Clears the progress line if one is on screen; call before printing anything else.
void clear_progress();

/// Whether a progress line is on screen (async-signal-safe: a signal handler may read it).
bool progress_open();

/// What erases the current terminal line: carriage return, then ECMA-48 "erase to end of line".
inline constexpr char kEraseLine[] = "\r\033[K";

/// "  3/390": `done` of `total` with thousands separators, padded to the width of `total` so
/// that the fields after it keep their place.
std::string progress_count(int64_t done, int64_t total);

/// One field of a progress line ("loss 1.2345") and its rank: on a narrow terminal the fields
/// of the highest ranks are left out first.
struct ProgressField {
  int rank = 0;
  std::string text;
};

/// `left` [=====>     ] `fields`, fitted to the terminal: the bar takes the room the fields
/// leave (at most 30 characters between the brackets); where fewer than 8 would be left, fields
/// are left out, highest rank first, and with only the rank-0 fields left, the bar. `fraction`
/// (0..1) of the bar is filled.
std::string progress_text(const std::string& left, double fraction,
                          const std::vector<ProgressField>& fields);

}  // namespace minidl::app
