#include "apps/cli.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "core/system.hpp"

namespace minidl::app {

namespace {
std::string shown(const std::string& v) { return v.size() > 24 ? v.substr(0, 24) + "..." : v; }
}  // namespace

CLI::Validator integer_in(long long lo, long long hi) {
  const std::string range =
      hi == std::numeric_limits<long long>::max()
          ? "an integer >= " + std::to_string(lo)
          : "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
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
      range);
}

CLI::Validator real_in(double lo, double hi, bool lo_open, bool hi_open) {
  auto num = [](double d) {
    char b[32];
    std::snprintf(b, sizeof b, "%.10g", d);
    return std::string(b);
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
      range);
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
      "gn_groups",       "bn_stats",        "bn_init",     "train_only",
      "stem_whitening"};
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

namespace {
/// The text of `path` (empty if unreadable).
std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// The last non-empty line of `text`, at most 300 characters.
std::string last_line(const std::string& text) {
  size_t end = text.find_last_not_of(" \t\r\n");
  if (end == std::string::npos) return "";
  const size_t begin = text.rfind('\n', end);
  const std::string line = text.substr(begin == std::string::npos ? 0 : begin + 1,
                                       end - (begin == std::string::npos ? 0 : begin + 1) + 1);
  return line.size() > 300 ? line.substr(0, 300) + "..." : line;
}

/// Runs argv[0] with arguments argv (stdout to /dev/null, stderr into `err`); returns its wait
/// status, or -1 with errno set if it could not be started.
int run_capturing_stderr(const std::vector<std::string>& argv, std::string& err) {
  namespace fs = std::filesystem;
  std::string tmpl = (fs::temp_directory_path() / "minidl-plot-XXXXXX").string();
  const int fd = mkstemp(tmpl.data());
  if (fd < 0) return -1;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fd, 2);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fd);
  int status = -1;
  if (spawned == 0) {
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  err = read_text(tmpl);
  unlink(tmpl.c_str());
  if (spawned != 0) errno = spawned;
  return spawned == 0 ? status : -1;
}

/// The Debian package that provides Python module `module`, for the modules the scripts import.
std::string debian_package_of(const std::string& module) {
  return module == "numpy" ? "python3-numpy" : "python3-matplotlib";
}
}  // namespace

std::string python_interpreter() {
  if (const char* p = std::getenv("MINIDL_PYTHON"); p && *p) return p;
  return "/usr/bin/python3";
}

std::vector<std::string> plot_script_dirs() {
  namespace fs = std::filesystem;
  if (const char* s = std::getenv("MINIDL_SCRIPTS"); s && *s) return {s};
  std::vector<std::string> dirs;
  char exe[4096] = {0};
  const ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len > 0) {
    const fs::path bin = fs::path(std::string(exe, len)).parent_path();
    dirs.push_back((bin / MINIDL_INSTALLED_SCRIPTS).lexically_normal().string());
  }
  dirs.push_back(MINIDL_SOURCE_SCRIPTS);
  return dirs;
}

std::string find_plot_script(const std::string& script_name) {
  namespace fs = std::filesystem;
  std::string looked;
  for (const std::string& dir : plot_script_dirs()) {
    const fs::path script = fs::path(dir) / script_name;
    std::error_code ec;
    if (fs::is_regular_file(script, ec)) return script.string();
    looked += (looked.empty() ? "" : ", ") + dir;
  }
  if (const char* env = std::getenv("MINIDL_SCRIPTS"); env && *env) {
    throw std::runtime_error("plots not drawn: " + script_name + " not found in $MINIDL_SCRIPTS (" +
                             looked +
                             "); set it to the folder that holds minidl's plot_*.py, or unset it "
                             "to use the installed ones");
  }
  throw std::runtime_error("plots not drawn: " + script_name + " not found; looked in " + looked +
                           ". Set MINIDL_SCRIPTS to the folder that holds minidl's plot_*.py "
                           "(scripts/ of the source tree, or share/minidl of an install)");
}

std::string draw_plots(const std::string& script_name, const std::string& dir) {
  const std::string script = find_plot_script(script_name);
  const std::string python = python_interpreter();
  const std::string by_hand = python + " " + script + " " + dir;
  std::string err;
  const int status = run_capturing_stderr({python, script, dir}, err);
  if (status < 0) {
    throw std::runtime_error("plots not drawn: cannot run " + python + " (" + std::strerror(errno) +
                             "); install Python and matplotlib with: apt-get install "
                             "python3-matplotlib");
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return script;
  for (const char* module : {"matplotlib", "numpy"}) {
    if (err.find("No module named '" + std::string(module)) != std::string::npos) {
      throw std::runtime_error("plots not drawn: " + python + " has no " + module +
                               " (No module named '" + module + "'); install it with: apt-get " +
                               "install " + debian_package_of(module));
    }
  }
  const std::string how = WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                            : "signal " + std::to_string(WTERMSIG(status));
  const std::string line = last_line(err);
  throw std::runtime_error("plots not drawn: " + script_name + " failed (" + how + ")" +
                           (line.empty() ? "" : ": " + line) +
                           "; to see all its output, run: " + by_hand);
}

bool run_plot_script(const std::string& script_name, const std::string& dir, bool quiet) {
  try {
    draw_plots(script_name, dir);
    return true;
  } catch (const std::runtime_error& e) {
    if (!quiet) {
      std::fflush(stdout);
      std::fprintf(stderr, "%s\n", e.what());
    }
    return false;
  }
}

bool plot_run(const std::string& run_dir, bool quiet) {
  return run_plot_script("plot_run.py", run_dir, quiet);
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

std::string count_text(double n, const std::string& singular, const std::string& plural) {
  std::string number;
  if (n == std::floor(n) && std::fabs(n) < 1e15) {
    number = with_thousands(static_cast<int64_t>(n));
  } else {
    char b[32];
    std::snprintf(b, sizeof b, "%g", n);
    number = b;
  }
  return number + " " + (n == 1 ? singular : plural.empty() ? singular + "s" : plural);
}

}  // namespace minidl::app
