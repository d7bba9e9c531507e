// minidl — the per-op profiler's registry and table (core/profiler.hpp).
#include "core/profiler.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string_view>

namespace minidl::profiler {

namespace {

struct Aggregate {
  int64_t calls = 0;
  double seconds = 0.0;
  double flops = 0.0;
  double algorithm_flops = 0.0;  // add_algorithm_flops only
  double bytes = 0.0;
};

/// The registry: one map per pass, keyed by op name. std::less<> looks names up as
/// string_views, so closing a Scope allocates only the first time a name is seen.
/// Main thread only (see the header).
using Registry = std::map<std::string, Aggregate, std::less<>>;
Registry g_forward, g_backward;

/// The innermost open Scope on this thread (OpenMP workers never open one).
thread_local Scope* t_current = nullptr;

}  // namespace

void detail::add_flops_to_current(double flops, double algorithm_flops, double bytes) {
  if (!t_current) return;
  t_current->flops_ += flops;
  t_current->algorithm_flops_ += algorithm_flops;
  t_current->bytes_ += bytes;
}

void set_enabled(bool on) { detail::g_enabled.store(on, std::memory_order_relaxed); }

void reset() {
  g_forward.clear();
  g_backward.clear();
}

void Scope::open() {
  flops_ = algorithm_flops_ = bytes_ = 0.0;
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
  it->second.algorithm_flops += algorithm_flops_;
  it->second.bytes += bytes_;
}

std::vector<Row> rows() {
  std::vector<Row> out;
  for (const auto* reg : {&g_forward, &g_backward}) {
    for (const auto& [name, a] : *reg) {
      out.push_back(Row{name, reg == &g_backward, a.calls, a.seconds, a.flops,
                        a.algorithm_flops != 0.0 ? a.algorithm_flops : a.flops, a.bytes});
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const Row& a, const Row& b) {
    if (a.seconds != b.seconds) return a.seconds > b.seconds;
    if (a.name != b.name) return a.name < b.name;
    return !a.backward && b.backward;
  });
  return out;
}

Ceilings read_ceilings(const std::string& path, int threads) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("roofline " + path + ": cannot open it");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("roofline " + path + ": not JSON (" + e.what() + ")");
  }
  std::string have;
  try {
    for (const auto& c : j.at("ceilings")) {
      const int t = c.at("threads").get<int>();
      have += (have.empty() ? "" : ", ") + std::to_string(t);
      if (t != threads) continue;
      Ceilings out;
      out.threads = t;
      out.gflops = c.at("sgemm_peak_gflops").get<double>();
      out.bytes_per_s = 1e9 * c.at("triad_gb_per_s").get<double>();
      out.source = path;
      if (!(out.gflops > 0.0) || !(out.bytes_per_s > 0.0)) {
        throw std::runtime_error("roofline " + path + ": ceilings for " + std::to_string(t) +
                                 " threads must be > 0");
      }
      return out;
    }
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("roofline " + path +
                             ": expected \"ceilings\": [{\"threads\", \"sgemm_peak_gflops\", "
                             "\"triad_gb_per_s\"}, ...] (" +
                             e.what() + ")");
  }
  throw std::runtime_error("roofline " + path + ": no ceilings for " + std::to_string(threads) +
                           " threads (it has: " + (have.empty() ? "none" : have) + ")");
}

double roofline_fraction(const Row& row, const Ceilings& ceilings) {
  if (!(row.seconds > 0.0)) return -1.0;
  if (row.algorithm_flops > 0.0) {
    double ceiling = ceilings.gflops * 1e9;  // FLOP/s
    if (row.bytes > 0.0)
      ceiling = std::min(ceiling, row.algorithm_flops / row.bytes * ceilings.bytes_per_s);
    return row.algorithm_flops / row.seconds / ceiling;
  }
  if (row.bytes > 0.0) return row.bytes / row.seconds / ceilings.bytes_per_s;
  return -1.0;
}

std::string table(double total_seconds, int64_t steps, const Ceilings* ceilings) {
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
  auto number = [](double v, const char* format) {
    char buf[32];
    std::snprintf(buf, sizeof buf, format, v);
    return std::string(buf);
  };
  auto emit = [&](const Row& r, const char* pass, const std::string& calls) {
    const bool timed = r.seconds > 0.0;
    const std::string gflops =
        r.flops != 0.0 && timed ? number(r.flops / r.seconds / 1e9, "%.1f") : "";
    const std::string alg = r.algorithm_flops != r.flops && timed
                                ? number(r.algorithm_flops / r.seconds / 1e9, "%.1f")
                                : "";
    const std::string mb = r.bytes != 0.0 ? number(r.bytes / steps / 1e6, "%.1f") : "";
    const std::string gbs =
        r.bytes != 0.0 && timed ? number(r.bytes / r.seconds / 1e9, "%.1f") : "";
    std::string roof;
    if (ceilings) {
      const double f = roofline_fraction(r, *ceilings);
      if (f >= 0.0) roof = number(100.0 * f, "%.0f%%");
    }
    std::snprintf(line, sizeof line,
                  "%-*s  %-8s  %8s  %10.2f  %10.3f  %7.1f  %8s  %8s  %8s  %7s  %6s", w,
                  r.name.c_str(), pass, calls.c_str(), 1e3 * r.seconds, 1e3 * r.seconds / steps,
                  100.0 * r.seconds / total_seconds, gflops.c_str(), alg.c_str(), mb.c_str(),
                  gbs.c_str(), roof.c_str());
    std::string s = line;
    s.erase(s.find_last_not_of(' ') + 1);  // no trailing blanks where the last columns are blank
    out += s + "\n";
  };
  std::snprintf(line, sizeof line, "%-*s  %-8s  %8s  %10s  %10s  %7s  %8s  %8s  %8s  %7s  %6s", w,
                "op", "pass", "calls", "total ms", "ms/step", "% total", "GFLOP/s", "alg GF/s",
                "MB/step", "GB/s", ceilings ? "% roof" : "");
  std::string header = line;
  header.erase(header.find_last_not_of(' ') + 1);
  out += header + "\n";
  const std::string rule(width + 2 + 8 + 2 + 8 + 2 + 10 + 2 + 10 + 2 + 7 + 2 + 8 + 2 + 8 + 2 + 8 +
                             2 + 7 + (ceilings ? 2 + 6 : 0),
                         '-');
  out += rule + "\n";
  double in_ops = 0.0;
  for (const Row& r : all) {
    emit(r, r.backward ? "backward" : "forward", std::to_string(r.calls));
    in_ops += r.seconds;
  }
  emit(Row{not_in_op, false, 0, total_seconds - in_ops, 0.0, 0.0, 0.0}, "", "");
  out += rule + "\n";
  emit(Row{"total", false, 0, total_seconds, 0.0, 0.0, 0.0}, "", "");
  if (ceilings) {
    char caption[512];
    std::snprintf(caption, sizeof caption,
                  "%% roof: of the roofline of %s at %d threads (SGEMM peak %.1f GFLOP/s, triad "
                  "%.1f GB/s): algorithm GFLOP/s over min(peak, FLOPs / bytes * bandwidth), or "
                  "GB/s over the bandwidth for ops without FLOPs\n",
                  ceilings->source.c_str(), ceilings->threads, ceilings->gflops,
                  ceilings->bytes_per_s / 1e9);
    out += caption;
  }
  return out;
}

}  // namespace minidl::profiler
