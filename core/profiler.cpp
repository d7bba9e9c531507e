// minidl — the per-op profiler's registry and table (core/profiler.hpp).
#include "core/profiler.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string_view>

namespace minidl::profiler {

namespace {

struct Aggregate {
  int64_t calls = 0;
  double seconds = 0.0;
  double flops = 0.0;
};

/// The registry: one map per pass, keyed by op name. std::less<> looks names up as
/// string_views, so closing a Scope allocates only the first time a name is seen.
/// Main thread only (see the header).
using Registry = std::map<std::string, Aggregate, std::less<>>;
Registry g_forward, g_backward;

/// The innermost open Scope on this thread (OpenMP workers never open one).
thread_local Scope* t_current = nullptr;

}  // namespace

void detail::add_flops_to_current(double flops) {
  if (t_current) t_current->flops_ += flops;
}

void set_enabled(bool on) { detail::g_enabled.store(on, std::memory_order_relaxed); }

void reset() {
  g_forward.clear();
  g_backward.clear();
}

void Scope::open() {
  flops_ = 0.0;
  parent_ = t_current;
  t_current = this;
  start_ = std::chrono::steady_clock::now();
}

void Scope::close() {
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  t_current = parent_;
  Registry& reg = backward_ ? g_backward : g_forward;
  auto it = reg.find(std::string_view(name_));
  if (it == reg.end()) it = reg.emplace(std::string(name_), Aggregate{}).first;
  it->second.calls += 1;
  it->second.seconds += seconds;
  it->second.flops += flops_;
}

std::vector<Row> rows() {
  std::vector<Row> out;
  for (const auto* reg : {&g_forward, &g_backward}) {
    for (const auto& [name, a] : *reg) {
      out.push_back(Row{name, reg == &g_backward, a.calls, a.seconds, a.flops});
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const Row& a, const Row& b) {
    if (a.seconds != b.seconds) return a.seconds > b.seconds;
    if (a.name != b.name) return a.name < b.name;
    return !a.backward && b.backward;
  });
  return out;
}

std::string table(double total_seconds, int64_t steps) {
  if (!(total_seconds > 0.0)) {
    throw std::invalid_argument("profiler::table: total_seconds must be > 0, got " +
                                std::to_string(total_seconds));
  }
  if (steps < 1) {
    throw std::invalid_argument("profiler::table: steps must be >= 1, got " +
                                std::to_string(steps));
  }
  const std::vector<Row> all = rows();
  const std::string not_in_op = "(not in any op)";
  size_t width = not_in_op.size();
  for (const Row& r : all) width = std::max(width, r.name.size());
  const int w = static_cast<int>(width);

  std::string out;
  char line[512];
  auto emit = [&](const std::string& name, const char* pass, const std::string& calls,
                  double seconds, double flops) {
    char gflops[32] = "";
    if (flops != 0.0 && seconds > 0.0)
      std::snprintf(gflops, sizeof gflops, "%.1f", flops / seconds / 1e9);
    std::snprintf(line, sizeof line, "%-*s  %-8s  %8s  %10.2f  %10.3f  %7.1f  %8s", w, name.c_str(),
                  pass, calls.c_str(), 1e3 * seconds, 1e3 * seconds / steps,
                  100.0 * seconds / total_seconds, gflops);
    std::string s = line;
    s.erase(s.find_last_not_of(' ') + 1);  // no trailing blanks where GFLOP/s is blank
    out += s + "\n";
  };
  std::snprintf(line, sizeof line, "%-*s  %-8s  %8s  %10s  %10s  %7s  %8s\n", w, "op", "pass",
                "calls", "total ms", "ms/step", "% total", "GFLOP/s");
  out += line;
  const std::string rule(width + 2 + 8 + 2 + 8 + 2 + 10 + 2 + 10 + 2 + 7 + 2 + 8, '-');
  out += rule + "\n";
  double in_ops = 0.0;
  for (const Row& r : all) {
    emit(r.name, r.backward ? "backward" : "forward", std::to_string(r.calls), r.seconds, r.flops);
    in_ops += r.seconds;
  }
  emit(not_in_op, "", "", total_seconds - in_ops, 0.0);
  out += rule + "\n";
  emit("total", "", "", total_seconds, 0.0);
  return out;
}

}  // namespace minidl::profiler
