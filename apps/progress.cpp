#include "apps/progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/system.hpp"

namespace minidl::app {

namespace {
volatile std::sig_atomic_t g_open = 0;  // a progress line is on screen
}  // namespace

bool progress_enabled() {
  static const bool enabled = [] {
    const char* term = std::getenv("TERM");
    return isatty(STDERR_FILENO) == 1 && !(term && std::strcmp(term, "dumb") == 0);
  }();
  return enabled;
}

int terminal_columns() {
  winsize ws{};
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* c = std::getenv("COLUMNS"); c && std::atoi(c) > 0) return std::atoi(c);
  return 80;
}

void draw_progress(const std::string& text) {
  if (!progress_enabled()) return;
  const size_t width = static_cast<size_t>(std::max(terminal_columns() - 1, 10));
  const std::string line = text.size() > width ? text.substr(0, width) : text;
  std::fflush(stdout);  // anything printed before stays above the line
  std::fprintf(stderr, "%s%s", kEraseLine, line.c_str());
  std::fflush(stderr);
  g_open = 1;
}

void clear_progress() {
  if (!g_open) return;
  std::fprintf(stderr, "%s", kEraseLine);
  std::fflush(stderr);
  g_open = 0;
}

bool progress_open() { return g_open != 0; }

std::string progress_count(int64_t done, int64_t total) {
  const std::string d = with_thousands(done), t = with_thousands(total);
  return std::string(t.size() > d.size() ? t.size() - d.size() : 0, ' ') + d + "/" + t;
}

std::string progress_text(const std::string& left, double fraction,
                          const std::vector<ProgressField>& fields) {
  const int columns = terminal_columns() - 1;
  int max_rank = 0;
  for (const ProgressField& f : fields) max_rank = std::max(max_rank, f.rank);
  auto joined = [&](int ranks) {
    std::string s;
    for (const ProgressField& f : fields)
      if (f.rank <= ranks) s += (s.empty() ? "" : "  ") + f.text;
    return s;
  };
  for (int ranks = max_rank; ranks >= 0; --ranks) {
    const std::string right = joined(ranks);
    const int room = columns - static_cast<int>(left.size() + right.size()) - 4;
    if (room < 8) continue;
    const int width = std::min(room, 30);
    const double f = std::clamp(fraction, 0.0, 1.0);
    const int done = static_cast<int>(f * width);
    std::string bar(static_cast<size_t>(width), ' ');
    std::fill(bar.begin(), bar.begin() + done, '=');
    if (done < width && f > 0) bar[static_cast<size_t>(done)] = '>';
    return left + " [" + bar + "] " + right;
  }
  return left + "  " + joined(0);
}

}  // namespace minidl::app
