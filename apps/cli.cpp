#include "apps/cli.hpp"

#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <stdexcept>

namespace minidl::app {

namespace {
std::string shown(const std::string& v) { return v.size() > 24 ? v.substr(0, 24) + "..." : v; }
}  // namespace

CLI::Validator integer_in(long long lo, long long hi) {
  return CLI::Validator(
      [lo, hi](std::string& v) -> std::string {
        const std::string want =
            "must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
        errno = 0;
        char* end = nullptr;
        const long long x = std::strtoll(v.c_str(), &end, 10);
        if (v.empty() || *end != '\0' || errno == ERANGE || x < lo || x > hi)
          return want + ", got " + shown(v);
        return "";
      },
      "INT in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

CLI::Validator real_in(double lo, double hi, bool lo_open, bool hi_open) {
  auto num = [](double d) {
    std::ostringstream o;
    o << d;
    return o.str();
  };
  const std::string range = "a number " + std::string(lo_open ? "> " : ">= ") + num(lo) + " and " +
                            (hi_open ? "< " : "<= ") + num(hi);
  return CLI::Validator(
      [=](std::string& v) -> std::string {
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        const bool ok = !v.empty() && *end == '\0' && std::isfinite(x) &&
                        (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
        return ok ? "" : "must be " + range + ", got " + shown(v);
      },
      "FLOAT: " + range);
}

std::string with_flag_names(const std::string& message) {
  // Library parameter -> flag, where the flag is not "--" + the name with '-' for '_'.
  static const std::pair<const char*, const char*> renamed[] = {
      {"warmup_epochs", "--warmup"}, {"eta_factors", "--etas"}, {"lrs", "--lr"}};
  static const char* const same[] = {
      "batch_size",      "epochs",          "lr",          "momentum",
      "weight_decay",    "label_smoothing", "threads",     "limit_train",
      "limit_test",      "stop_after",      "tta",         "normalize",
      "schedule",        "variants",        "models",      "model",
      "probes",          "layer",           "data",        "recipe",
      "eval_batch_size", "bn_group_size",   "bn_sync",     "bn_renorm",
      "renorm_r_max",    "renorm_d_max",    "renorm_ramp", "norm",
      "gn_groups",       "bn_stats",        "bn_init",     "train_only"};
  auto flag_of = [](const std::string& param) {
    std::string flag = "--" + param;
    for (char& c : flag) c = c == '_' ? '-' : c;
    return flag;
  };
  // A name with '_' cannot be an English word: each whole-word one after the first is renamed
  // too ("bn_group_size and bn_sync exact exclude each other").
  auto rename_inner = [&](std::string text) {
    for (const char* param : same) {
      const std::string p = param;
      if (p.find('_') == std::string::npos) continue;
      for (size_t at = text.find(p); at != std::string::npos; at = text.find(p, at + 1)) {
        const bool starts = at == 0 || !(std::isalnum(static_cast<unsigned char>(text[at - 1])) ||
                                         text[at - 1] == '_' || text[at - 1] == '-');
        const size_t e = at + p.size();
        const bool ends = e == text.size() ||
                          !(std::isalnum(static_cast<unsigned char>(text[e])) || text[e] == '_');
        if (starts && ends) text.replace(at, p.size(), flag_of(p));
      }
    }
    return text;
  };
  const size_t end = message.find_first_of(" :");
  if (end == std::string::npos) return message;
  const std::string word = message.substr(0, end);
  for (const auto& [param, flag] : renamed) {
    if (word == param) return flag + rename_inner(message.substr(end));
  }
  for (const char* param : same) {
    if (word == param) return flag_of(word) + rename_inner(message.substr(end));
  }
  return message;
}

std::string resolve_data_dir(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("MINIDL_DATA"); env && *env) return env;
  throw std::invalid_argument(
      "--data: no CIFAR-10 directory given; pass --data DIR or set "
      "MINIDL_DATA (get the data with scripts/get_cifar10.sh)");
}

bool run_plot_script(const std::string& script_name, const std::string& dir, bool quiet) {
  namespace fs = std::filesystem;
  char exe[4096] = {0};
  const ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  fs::path script = fs::path(len > 0 ? std::string(exe, len) : "").parent_path().parent_path() /
                    "scripts" / script_name;
  if (const char* s = std::getenv("MINIDL_SCRIPTS")) script = fs::path(s) / script_name;
  const std::string cmd = "/usr/bin/python3 " + script.string() + " " + dir;
  if (fs::exists(script) && std::system((cmd + " > /dev/null 2>&1").c_str()) == 0) return true;
  if (!quiet) {
    std::printf(
        "plots not made (needs /usr/bin/python3 with matplotlib: "
        "scripts/install_deps.sh --with-python); run: %s\n",
        cmd.c_str());
  }
  return false;
}

std::string format_duration(double seconds) {
  char buf[32];
  const int t = static_cast<int>(seconds + 0.5);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%dh%02dm", t / 3600, (t / 60) % 60);
  else
    std::snprintf(buf, sizeof buf, "%dm%02ds", t / 60, t % 60);
  return buf;
}

}  // namespace minidl::app
