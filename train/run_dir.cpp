#include "train/run_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iterator>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <type_traits>

#include "core/file_io.hpp"
#include "layers/models/registry.hpp"

namespace minidl::train {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
constexpr uint64_t kMaxConfigBytes = 1u << 20;    // a config.json is about 1 KB
constexpr uint64_t kMaxMetricsBytes = 64u << 20;  // a row is under 100 bytes
}  // namespace

// ---- config.json ----------------------------------------------------------------------------

namespace {

/// An epoch count as config.json holds it: an integer, or airbench94's number.
struct Epochs {
  double& value;
  bool fractional;
};
/// A choice as config.json holds it: its name (core/enum_names.hpp).
template <class E>
struct Named {
  E& value;
};
template <class E>
Named<E> named(E& v) {
  return {v};
}

/// Calls f(key, field) for every field config.json holds, in file order: the one list that
/// config_to_json and config_from_json share. (nlohmann's NLOHMANN_DEFINE_TYPE_* would give a
/// single list too, but its errors are the library's type_error text; read_field names the key
/// and the expected type and checks integer and float ranges.)
template <class Options, class F>
void for_each_field(Options& c, F&& f) {
  if (c.recipe == Recipe::kAirbench94) {  // the preset fixes every other field
    f("data", c.data);
    f("seed", c.seed);
    f("tta", c.tta);
    f("threads", c.threads);
    f("epochs", Epochs{c.epochs, true});
    f("batch_size", c.batch_size);
    f("limit_train", c.limit_train);
    f("limit_test", c.limit_test);
    f("eval_every_epoch", c.eval_every_epoch);
    return;
  }
  f("data", c.data);
  f("model", c.model);
  f("epochs", Epochs{c.epochs, false});
  f("batch_size", c.batch_size);
  f("optimizer", named(c.optimizer));
  f("lr", c.lr);
  f("momentum", c.momentum);
  f("nesterov", c.nesterov);
  f("weight_decay", c.weight_decay);
  f("schedule", named(c.schedule));
  f("warmup_epochs", c.warmup_epochs);
  f("milestones", c.milestones);
  f("gamma", c.gamma);
  f("label_smoothing", c.label_smoothing);
  f("augment", c.augment);
  f("normalize", c.normalize);
  f("seed", c.seed);
  f("threads", c.threads);
  f("limit_train", c.limit_train);
  f("limit_test", c.limit_test);
  f("out", c.out);
  f("bn_init", named(c.bn_init));
  f("train_only", named(c.train_only));
  f("bn_stats", named(c.bn_stats));
}

template <class T>
struct is_named : std::false_type {};
template <class E>
struct is_named<Named<E>> : std::true_type {};

template <class Field>
void write_field(json& j, const char* key, const Field& field) {
  using T = std::decay_t<Field>;
  if constexpr (std::is_same_v<T, Epochs>) {
    if (field.fractional)
      j[key] = field.value;
    else
      j[key] = static_cast<int64_t>(field.value);
  } else if constexpr (is_named<T>::value) {
    j[key] = name_of(field.value);
  } else if constexpr (std::is_same_v<T, float>) {
    j[key] = shortest_decimal(field);
  } else {
    j[key] = field;
  }
}

/// Reads key `key` of `j` into `field` if present, checking its JSON type first. Throws
/// std::runtime_error naming the key and the expected type.
template <class Field>
void read_field(const json& j, const char* key, Field&& field) {
  using T = std::decay_t<Field>;
  auto it = j.find(key);
  if (it == j.end()) return;
  const json& v = *it;
  auto bad = [&](const std::string& expected) {
    std::string got = v.dump();
    if (got.size() > 40) got = got.substr(0, 40) + "...";
    return std::runtime_error(std::string("key \"") + key + "\" must be " + expected + ", got " +
                              got);
  };
  if constexpr (std::is_same_v<T, Epochs>) {
    if (field.fractional ? !v.is_number() : !v.is_number_integer())
      throw bad(field.fractional ? "a number" : "an integer");
    const double x = v.get<double>();
    if (!(std::fabs(x) <= 1e9)) throw bad("a number in range");
    field.value = x;
  } else if constexpr (is_named<T>::value) {
    using E = std::remove_reference_t<decltype(field.value)>;
    if (!v.is_string()) throw bad(choices_text(names_of<E>()));
    try {
      field.value = parse_enum<E>(v.get<std::string>(), std::string("key \"") + key + "\"");
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(e.what());
    }
  } else {
    using F = T;
    if constexpr (std::is_same_v<F, std::string>) {
      if (!v.is_string()) throw bad("a string");
      field = v.get<std::string>();
    } else if constexpr (std::is_same_v<F, bool>) {
      if (!v.is_boolean()) throw bad("true or false");
      field = v.get<bool>();
    } else if constexpr (std::is_integral_v<F>) {
      if (!v.is_number_integer()) throw bad("an integer");
      if (v.is_number_unsigned()) {  // nlohmann parses every non-negative integer as unsigned
        if (v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<F>::max()))
          throw bad("an integer in range");
      } else if (std::is_unsigned_v<F> ||
                 v.get<int64_t>() < static_cast<int64_t>(std::numeric_limits<F>::lowest())) {
        throw bad("an integer in range");
      }
      field = v.get<F>();
    } else if constexpr (std::is_floating_point_v<F>) {
      if (!v.is_number()) throw bad("a number");
      // Converting a double outside F's range is undefined behaviour: check first.
      if (!(std::fabs(v.get<double>()) <= static_cast<double>(std::numeric_limits<F>::max())))
        throw bad("a number within the range of a float");
      field = v.get<F>();
    } else {  // std::vector<double>
      if (!v.is_array()) throw bad("an array of numbers");
      field.clear();
      for (const json& x : v) {
        if (!x.is_number()) throw bad("an array of numbers");
        field.push_back(x.get<double>());
      }
    }
  }
}

}  // namespace

double shortest_decimal(float v) {
  if (!std::isfinite(v)) return v;
  char text[32];
  for (int digits = 1; digits <= 9; ++digits) {  // 9 significant digits always read back
    std::snprintf(text, sizeof text, "%.*g", digits, static_cast<double>(v));
    if (std::strtof(text, nullptr) == v) return std::strtod(text, nullptr);
  }
  return v;
}

json config_to_json(const TrainOptions& o) {
  json j = json::object();
  if (o.recipe == Recipe::kAirbench94 || o.recipe == Recipe::kBnSpeedrun)
    j["recipe"] = name_of(o.recipe);
  TrainOptions c = o;  // for_each_field hands out references
  for_each_field(c, [&](const char* key, auto&& field) { write_field(j, key, field); });
  // bn-speedrun: every field of the list (a later preset cannot change a saved run) and the
  // one setting it adds.
  if (c.recipe == Recipe::kBnSpeedrun) j["eval_every_epoch"] = c.eval_every_epoch;
  // The TTA level of every other recipe only when a run asks for the TTA pass (airbench94's is
  // in its list above).
  if (c.recipe != Recipe::kAirbench94 && c.tta > 0) j["tta"] = c.tta;
  // Data-parallel settings only when they change the run (config.json of earlier builds, and
  // the checkpoints that embed it, stay byte-identical).
  if (c.bn_sync != BnSync::kNone) write_field(j, "bn_sync", named(c.bn_sync));
  if (c.reduction != GradientReduction::kMpi) write_field(j, "reduction", named(c.reduction));
  if (c.bn_group_size > 0) j["bn_group_size"] = c.bn_group_size;
  if (c.bn_renorm) {
    j["bn_renorm"] = true;
    write_field(j, "renorm_r_max", c.renorm_r_max);
    write_field(j, "renorm_d_max", c.renorm_d_max);
    write_field(j, "renorm_ramp_start", c.renorm_ramp_start);
    write_field(j, "renorm_ramp_end", c.renorm_ramp_end);
  }
  // The normalization likewise: only when not BatchNorm (gn_groups only when not 32).
  if (c.norm != ModelOptions{}.norm) write_field(j, "norm", named(c.norm));
  if (c.gn_groups != ModelOptions{}.gn_groups) j["gn_groups"] = c.gn_groups;
  if (c.stem_whitening) j["stem_whitening"] = true;
  return j;
}

TrainOptions config_from_json(const json& j) {
  if (!j.is_object()) throw std::runtime_error("expected a JSON object of training settings");
  TrainOptions c;
  if (j.contains("recipe")) {
    Recipe r = Recipe::kDefault;
    read_field(j, "recipe", named(r));
    if (r == Recipe::kAirbench94) {  // the preset at the saved batch size and length
      int64_t batch = 1024;
      double epochs = 9.9;
      read_field(j, "batch_size", batch);
      read_field(j, "epochs", Epochs{epochs, true});
      if (batch < 2) throw std::runtime_error("key \"batch_size\" must be >= 2");
      c = airbench94_options(batch, epochs);
    } else {
      c = preset(r);
    }
  }
  for_each_field(c, [&](const char* key, auto&& field) { read_field(j, key, field); });
  if (c.recipe == Recipe::kBnSpeedrun) read_field(j, "eval_every_epoch", c.eval_every_epoch);
  if (c.recipe != Recipe::kAirbench94) read_field(j, "tta", c.tta);
  read_field(j, "bn_sync", named(c.bn_sync));
  read_field(j, "reduction", named(c.reduction));
  read_field(j, "bn_group_size", c.bn_group_size);
  read_field(j, "bn_renorm", c.bn_renorm);
  read_field(j, "renorm_r_max", c.renorm_r_max);
  read_field(j, "renorm_d_max", c.renorm_d_max);
  read_field(j, "renorm_ramp_start", c.renorm_ramp_start);
  read_field(j, "renorm_ramp_end", c.renorm_ramp_end);
  read_field(j, "norm", named(c.norm));
  read_field(j, "gn_groups", c.gn_groups);
  read_field(j, "stem_whitening", c.stem_whitening);
  return c;
}

TrainOptions read_config(const std::string& path) {
  // Regular files only, size checked before reading (a link to /dev/zero is refused at once).
  const std::string text = read_small_file(path, kMaxConfigBytes, "run configuration");
  if (json_nesting_depth(text) > 8) {
    throw std::runtime_error("\"" + path +
                             "\" nests arrays or objects more than 8 deep; it is "
                             "not a minidl config.json");
  }
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw std::runtime_error("\"" + path + "\" is not valid JSON (error at byte " +
                             std::to_string(e.byte) + ")");
  }
  try {
    return config_from_json(j);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error("\"" + path + "\": " + e.what());
  }
}

void write_config(const std::string& path, const TrainOptions& o) {
  write_file_atomic(path,
                    config_to_json(o).dump(2, ' ', false, json::error_handler_t::replace) + "\n");
}

namespace {
/// Every setting of `o` under its config.json key, none left out (config_differences).
json all_fields(const TrainOptions& o) {
  json j = json::object();
  j["recipe"] = name_of(o.recipe);
  TrainOptions c = o;
  c.recipe = Recipe::kDefault;  // for_each_field's full list
  for_each_field(c, [&](const char* key, auto&& field) { write_field(j, key, field); });
  j["epochs"] = o.epochs;
  j["tta"] = c.tta;
  j["eval_every_epoch"] = c.eval_every_epoch;
  write_field(j, "bn_sync", named(c.bn_sync));
  write_field(j, "reduction", named(c.reduction));
  j["bn_group_size"] = c.bn_group_size;
  j["bn_renorm"] = c.bn_renorm;
  write_field(j, "renorm_r_max", c.renorm_r_max);
  write_field(j, "renorm_d_max", c.renorm_d_max);
  write_field(j, "renorm_ramp_start", c.renorm_ramp_start);
  write_field(j, "renorm_ramp_end", c.renorm_ramp_end);
  write_field(j, "norm", named(c.norm));
  j["gn_groups"] = c.gn_groups;
  j["stem_whitening"] = c.stem_whitening;
  return j;
}

std::string value_text(const json& v) {
  if (v.is_number_float()) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", v.get<double>());
    return b;
  }
  if (v.is_array()) {
    std::string out;
    for (const json& x : v) out += (out.empty() ? "" : " ") + value_text(x);
    return out.empty() ? "(none)" : out;
  }
  if (v.is_string()) return v.get<std::string>();
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}
}  // namespace

std::vector<ConfigDifference> config_differences(const TrainOptions& saved,
                                                 const TrainOptions& given) {
  const json a = all_fields(saved), b = all_fields(given);
  std::vector<ConfigDifference> out;
  for (auto it = a.begin(); it != a.end(); ++it) {
    const json& other = b.at(it.key());
    if (*it != other) out.push_back({it.key(), value_text(*it), value_text(other)});
  }
  return out;
}

// ---- run.lock -------------------------------------------------------------------------------

RunLock::RunLock(const std::string& run_dir) {
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  if (ec || !fs::is_directory(run_dir)) {
    throw std::runtime_error("cannot create the run directory \"" + run_dir + "\": " +
                             (ec ? ec.message() : std::string("a file of that name exists")));
  }
  const std::string path = run_dir + "/run.lock";
  try {
    lock_ = std::make_unique<FileLock>(path);
  } catch (const FileLocked& e) {
    throw RunInUse("run directory \"" + run_dir + "\" is in use by another process (pid " +
                       (e.holder_pid > 0 ? std::to_string(e.holder_pid) : "unknown") + " holds \"" +
                       path + "\")",
                   e.holder_pid);
  }
  remove_stale_temporaries(run_dir);
}

std::vector<std::string> run_files(const std::string& run_dir) {
  std::vector<std::string> found;
  for (const char* name : {"config.json", "train_state.safetensors", "model.safetensors",
                           "metrics.csv", "results.json", "log.jsonl", "train.log"}) {
    std::error_code ec;
    if (fs::exists(fs::symlink_status(run_dir + "/" + name, ec))) found.push_back(name);
  }
  return found;
}

std::string create_run_dir(const std::string& parent, const std::string& model, int64_t when) {
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec || !fs::is_directory(parent)) {
    throw std::runtime_error("cannot create the folder \"" + parent + "\" for the run: " +
                             (ec ? ec.message() : std::string("a file of that name exists")));
  }
  std::string name = model.empty() ? std::string("run") : model;
  for (char& c : name) {
    const bool keep =
        std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    if (!keep) c = '_';
  }
  const std::time_t t = static_cast<std::time_t>(when);
  std::tm local{};
  localtime_r(&t, &local);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &local);
  const std::string base = (fs::path(parent) / (name + "-" + stamp)).string();
  constexpr int kMaxSuffix = 10000;
  for (int k = 1; k <= kMaxSuffix; ++k) {
    const std::string dir = k == 1 ? base : base + "-" + std::to_string(k);
    if (::mkdir(dir.c_str(), 0755) == 0) return dir;
    if (errno != EEXIST) {
      throw std::runtime_error("cannot create the run folder \"" + dir +
                               "\": " + std::strerror(errno));
    }
  }
  throw std::runtime_error("cannot create a run folder: \"" + base + "\" and its " +
                           std::to_string(kMaxSuffix - 1) + " numbered variants all exist");
}

// ---- metrics.csv ----------------------------------------------------------------------------

namespace {
const char* const kMetricsColumns[] = {"epoch",     "train_loss",       "train_accuracy",
                                       "test_loss", "test_accuracy",    "lr",
                                       "seconds",   "images_per_second"};
}  // namespace

std::string metrics_header() {
  std::string h;
  for (const char* c : kMetricsColumns) h += (h.empty() ? "" : ",") + std::string(c);
  return h + "\n";
}

namespace {
/// `v` printed with the printf format `fmt` (one double).
std::string printed(const char* fmt, double v) {
  const int n = std::snprintf(nullptr, 0, fmt, v);
  std::string s(static_cast<size_t>(std::max(n, 0)) + 1, '\0');
  std::snprintf(s.data(), s.size(), fmt, v);
  s.pop_back();
  return s;
}

/// The fields of metrics.csv's row `r`, in kMetricsColumns' order, as the file holds them; an
/// empty field where the epoch has no value (the test columns of an epoch not evaluated).
std::vector<std::string> metrics_fields(const MetricsRow& r) {
  auto opt = [](const std::optional<double>& v) { return v ? printed("%.6f", *v) : ""; };
  std::vector<std::string> f = {std::to_string(r.epoch),
                                printed("%.6f", r.train_loss),
                                printed("%.6f", r.train_accuracy),
                                opt(r.test_loss),
                                opt(r.test_accuracy),
                                printed("%.6g", r.lr),
                                printed("%.3f", r.seconds),
                                printed("%.1f", r.images_per_second)};
  return f;
}
}  // namespace

std::string format_metrics_row(const MetricsRow& r) {
  std::string row;
  for (const std::string& f : metrics_fields(r)) row += (row.empty() ? "" : ",") + f;
  return row + "\n";
}

std::vector<MetricsRow> parse_metrics(const std::string& text, const std::string& path) {
  std::istringstream in(text);
  std::string line;
  auto split = [](const std::string& l) {
    std::vector<std::string> f;
    std::stringstream ss(l);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    if (!l.empty() && l.back() == ',') f.push_back("");
    return f;
  };
  if (!std::getline(in, line)) throw std::runtime_error("\"" + path + "\" is empty");
  const std::vector<std::string> header = split(line);
  std::map<std::string, size_t> col;
  for (size_t i = 0; i < header.size(); ++i) col[header[i]] = i;
  for (const char* required :
       {"epoch", "train_loss", "train_accuracy", "lr", "seconds", "images_per_second"}) {
    if (!col.count(required))
      throw std::runtime_error("\"" + path + "\" has no column \"" + required + "\"");
  }
  std::vector<MetricsRow> rows;
  while (std::getline(in, line)) {
    const std::vector<std::string> f = split(line);
    // The value of column `name`: nullopt when empty or absent (optional columns only).
    auto value = [&](const char* name, bool required) -> std::optional<double> {
      auto it = col.find(name);
      if (it == col.end() || it->second >= f.size() || f[it->second].empty()) {
        if (!required) return std::nullopt;
        throw std::runtime_error("\"" + path + "\": row \"" + line.substr(0, 80) +
                                 "\" has no value in column \"" + name + "\"");
      }
      const std::string& s = f[it->second];
      char* end = nullptr;
      const double x = std::strtod(s.c_str(), &end);
      if (end == s.c_str() || *end != '\0' || !std::isfinite(x)) {
        throw std::runtime_error("\"" + path + "\": row \"" + line.substr(0, 80) + "\" has \"" +
                                 s.substr(0, 20) + "\" in column \"" + name +
                                 "\", expected a number");
      }
      return x;
    };
    MetricsRow r;
    r.epoch = static_cast<int64_t>(*value("epoch", true));
    r.train_loss = *value("train_loss", true);
    r.train_accuracy = *value("train_accuracy", true);
    r.test_loss = value("test_loss", false);
    r.test_accuracy = value("test_accuracy", false);
    if (r.test_accuracy && *r.test_accuracy < 0) r.test_accuracy.reset();  // airbench's old -1
    r.lr = *value("lr", true);
    r.seconds = *value("seconds", true);
    r.images_per_second = *value("images_per_second", true);
    rows.push_back(r);
  }
  return rows;
}

std::vector<MetricsRow> read_metrics(const std::string& path) {
  return parse_metrics(read_small_file(path, kMaxMetricsBytes, "metrics"), path);
}

// ---- log.jsonl ------------------------------------------------------------------------------

namespace {
/// A finite number as JSON with 6 significant digits; null otherwise (never written: a step or
/// epoch with a non-finite loss ends the run before it is logged).
std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char b[32];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}

constexpr size_t kMaxLogLine = 1 << 16;  // a log.jsonl line is about 100 bytes
}  // namespace

std::string format_step_record(const StepEnd& s) {
  return "{\"type\": \"step\", \"epoch\": " + std::to_string(s.epoch + 1) +
         ", \"step\": " + std::to_string(s.step) + ", \"loss\": " + json_number(s.loss) +
         ", \"lr\": " + json_number(s.lr) + ", \"images_per_s\": " +
         json_number(s.seconds > 0 ? static_cast<double>(s.images) / s.seconds : 0.0) + "}\n";
}

std::string format_epoch_record(const MetricsRow& r, int64_t step) {
  // metrics.csv's columns in its order, each value as the file has it: the same numbers.
  const std::vector<std::string> fields = metrics_fields(r);
  std::string line = "{\"type\": \"epoch\", \"step\": " + std::to_string(step);
  for (size_t i = 0; i < fields.size(); ++i) {
    const std::string& f = fields[i];
    const bool number = !f.empty() && f.find_first_of("ni") == std::string::npos;  // nan, inf
    line += ", \"" + std::string(kMetricsColumns[i]) + "\": " + (number ? f : "null");
  }
  return line + "}\n";
}

void trim_run_log(const std::string& path, int64_t epochs_done, int64_t steps_done) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(path, ec))) return;
  uint64_t cut = 0;  // the bytes kept: whole lines up to the resumed point
  {
    const RegularFile file(path, "run log");
    std::string line;
    bool past = false;
    char buf[1 << 16];
    for (uint64_t at = 0; at < file.size() && !past;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(sizeof buf, file.size() - at));
      file.read_at(at, buf, n);
      for (size_t i = 0; i < n && !past; ++i) {
        if (buf[i] != '\n') {
          if (line.size() <= kMaxLogLine) line.push_back(buf[i]);
          continue;
        }
        const json j = line.size() <= kMaxLogLine && json_nesting_depth(line) <= 2
                           ? json::parse(line, nullptr, false)
                           : json();
        const auto number = [&](const char* key) {
          return j.is_object() && j.contains(key) && j[key].is_number_integer()
                     ? j[key].get<int64_t>()
                     : INT64_MAX;
        };
        const std::string type = j.is_object() && j.contains("type") && j["type"].is_string()
                                     ? j["type"].get<std::string>()
                                     : "";
        past = type == "step"    ? number("step") > steps_done
               : type == "epoch" ? number("epoch") > epochs_done
                                 : true;
        if (!past) cut = at + i + 1;
        line.clear();
      }
      at += n;
    }
  }
  if (cut == fs::file_size(path, ec) && !ec) return;
  const int fd = ::open(path.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(cut)) != 0) {
    const std::string reason = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("cannot cut \"" + path + "\" to the resumed run's steps: " + reason);
  }
  ::close(fd);
}

// ---- model.safetensors ----------------------------------------------------------------------

void save_checkpoint(const std::string& path, const Module& model, const TrainOptions& o,
                     int64_t epoch, double test_accuracy, double test_accuracy_tta,
                     const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> meta = {
      {"format", "minidl"},
      {"model", o.model},
      {"normalization", o.normalize},
      {"config", config_to_json(o).dump(-1, ' ', false, json::error_handler_t::replace)},
      {"epoch", std::to_string(epoch)},
      {"test_accuracy", std::to_string(test_accuracy)},
      {"seed", std::to_string(o.seed)}};
  if ((o.recipe == Recipe::kAirbench94 || o.tta > 0) && !std::isnan(test_accuracy_tta)) {
    meta["tta"] = std::to_string(o.tta);
    meta["test_accuracy_tta"] = std::to_string(test_accuracy_tta);
  }
  for (const auto& [key, value] : extra) meta[key] = value;
  save_safetensors(path, model.state_dict(), meta);
}

ModelOptions checkpoint_model_options(const Checkpoint& ck, const std::string& path) {
  ModelOptions mo;
  auto it = ck.metadata.find("config");
  if (it == ck.metadata.end()) return mo;  // minidl before the entry existed: BatchNorm
  json j;
  try {
    j = json::parse(it->second);
  } catch (const json::parse_error&) {
    throw std::runtime_error("checkpoint \"" + path +
                             "\": metadata \"config\" is not valid JSON (was it written by "
                             "minidl train?)");
  }
  if (!j.is_object()) return mo;
  try {  // only what builds the model: the norm (absent: bn) and GroupNorm's groups
    read_field(j, "norm", named(mo.norm));
    read_field(j, "gn_groups", mo.gn_groups);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error("checkpoint \"" + path + "\": metadata \"config\": " + e.what());
  }
  return mo;
}

std::shared_ptr<Module> load_model(const std::string& path, Checkpoint* out, bool allow_nonfinite) {
  Checkpoint ck = load_safetensors(path);
  if (!allow_nonfinite) {
    for (const auto& [name, t] : ck.tensors) {
      int64_t bad = 0, first = -1;
      const float* v = t.data();
      for (int64_t i = 0; i < t.numel(); ++i) {
        if (!std::isfinite(v[i])) {
          if (bad++ == 0) first = i;
        }
      }
      if (bad > 0) {
        throw NonFiniteCheckpoint("checkpoint \"" + path + "\": tensor \"" + name + "\" has " +
                                  std::to_string(bad) + " NaN or infinite value(s) of " +
                                  std::to_string(t.numel()) + " (first at index " +
                                  std::to_string(first) + "); the run that wrote it diverged");
      }
    }
  }
  auto it = ck.metadata.find("model");
  if (it == ck.metadata.end()) {
    throw std::runtime_error("checkpoint \"" + path +
                             "\" has no \"model\" entry in its "
                             "__metadata__ (was it written by minidl train?)");
  }
  std::shared_ptr<Module> model;
  try {
    model = create_model(it->second, checkpoint_model_options(ck, path));
  } catch (const std::invalid_argument& e) {  // an unknown or too large model
    throw std::runtime_error("checkpoint \"" + path + "\" (metadata \"model\"): " + e.what());
  }
  try {
    model->load_state_dict(ck.tensors);
  } catch (const std::exception& e) {
    throw std::runtime_error("checkpoint \"" + path + "\" does not fit model " + it->second + ": " +
                             e.what());
  }
  model->eval();
  if (out) *out = std::move(ck);
  return model;
}

data::Normalization checkpoint_normalization(const Checkpoint& ck, const std::string& path) {
  auto it = ck.metadata.find("normalization");
  if (it == ck.metadata.end()) return data::Normalization{};
  try {
    return data::normalization_named(it->second, "checkpoint \"" + path + "\"");
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(e.what());
  }
}

namespace {
/// The integer metadata entry `key` of `ck` (read from `path`), which must be in [lo, hi].
int64_t meta_int(const Checkpoint& ck, const std::string& path, const std::string& key, int64_t lo,
                 int64_t hi) {
  auto it = ck.metadata.find(key);
  auto bad = [&](const std::string& what) {
    return ResumeError("\"" + path + "\": metadata \"" + key + "\" " + what);
  };
  if (it == ck.metadata.end()) throw bad("is missing");
  const std::string& v = it->second;
  if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos)
    throw bad("must be a non-negative integer, got \"" + v.substr(0, 40) + "\"");
  const int64_t x = std::stoll(v);
  if (x < lo || x > hi) {
    throw bad("is " + v + ", expected " + std::to_string(lo) + " to " + std::to_string(hi));
  }
  return x;
}
}  // namespace

int64_t checkpoint_epoch(const std::string& run_dir) {
  const std::string path = run_dir + "/model.safetensors";
  if (!fs::exists(path)) return 0;
  const Checkpoint ck = load_safetensors(path);
  try {
    return meta_int(ck, path, "epoch", 0, 1000000000);
  } catch (const ResumeError&) {
    throw std::runtime_error("\"" + path +
                             "\" has no epoch count in its metadata (was it written by minidl "
                             "train?)");
  }
}

// ---- train_state.safetensors ----------------------------------------------------------------

namespace {
const char* const kStateFormat = "minidl-train-state";

/// The first `rows` epoch rows of a metrics.csv text (header kept). Throws if it has fewer.
std::string first_metrics_rows(const std::string& text, int64_t rows, const std::string& path) {
  std::istringstream in(text);
  std::string line, out;
  int64_t n = -1;  // the header is row -1
  while (n < rows && std::getline(in, line)) {
    out += line + "\n";
    ++n;
  }
  if (n < rows) {
    throw ResumeError("\"" + path + "\" has " + std::to_string(std::max<int64_t>(n, 0)) +
                      " epoch rows, the saved state is at epoch " + std::to_string(rows));
  }
  return out;
}
}  // namespace

void save_train_state(const std::string& path, const Module& model, optim::Optimizer& opt,
                      const std::string& model_name, int64_t epochs_done, int64_t step,
                      const std::string& metrics) {
  NamedTensors state;
  for (auto& [name, t] : model.state_dict()) state.emplace_back("model." + name, t);
  const NamedTensors params = model.named_parameters();
  for (const auto& b : opt.state_buffers()) {
    state.emplace_back("optimizer." + params.at(b.param).first + "." + b.kind,
                       Tensor({static_cast<int64_t>(b.values->size())}, *b.values));
  }
  save_safetensors(path, state,
                   {{"format", kStateFormat},
                    {"version", "2"},
                    {"model", model_name},
                    {"epochs_done", std::to_string(epochs_done)},
                    {"step", std::to_string(step)},
                    {"optimizer_steps", std::to_string(opt.step_count())},
                    {"metrics", metrics}});
}

ResumePoint load_train_state(const std::string& run_dir, Module& model, optim::Optimizer& opt,
                             const TrainOptions& o, int64_t per_epoch) {
  const std::string path = run_dir + "/train_state.safetensors";
  const std::string model_path = run_dir + "/model.safetensors";
  if (!fs::exists(path)) {
    throw ResumeError("\"" + path +
                      "\" does not exist: no epoch of this run finished, so there is nothing to "
                      "continue (start it again without resuming)");
  }
  Checkpoint ck;
  try {
    ck = load_safetensors(path);
  } catch (const std::runtime_error& e) {
    throw ResumeError(e.what());
  }
  auto fail = [&](const std::string& what) { return ResumeError("\"" + path + "\" " + what); };
  ResumePoint r;
  r.epoch = meta_int(ck, path, "epochs_done", 1, static_cast<int64_t>(o.epochs));
  r.step = meta_int(ck, path, "step", 0, INT64_MAX / 2);
  if (r.step != r.epoch * per_epoch) {
    throw fail("is at step " + std::to_string(r.step) + " after " + std::to_string(r.epoch) +
               " epochs, but this run has " + std::to_string(per_epoch) +
               " batches per epoch (were limit_train or batch_size changed?)");
  }
  const int64_t optimizer_steps = meta_int(ck, path, "optimizer_steps", 0, INT64_MAX / 2);
  const NamedTensors params = model.named_parameters();
  if (params.size() != opt.params().size()) throw std::logic_error("optimizer and model disagree");
  std::map<std::string, Tensor> saved_buffers;
  NamedTensors model_state;
  const bool v2 = ck.metadata.count("version") && ck.metadata.at("version") == "2";
  for (auto& [name, t] : ck.tensors) {
    if (v2 && name.rfind("model.", 0) == 0)
      model_state.emplace_back(name.substr(6), t);
    else if (name.rfind("optimizer.", 0) == 0)
      saved_buffers[name] = t;
    else
      throw fail("has an entry \"" + name + "\" that is neither model.* nor optimizer.*");
  }
  if (v2) {
    auto format = ck.metadata.find("format");
    if (format == ck.metadata.end() || format->second != kStateFormat) {
      throw fail("is not a minidl training state (its metadata has no format \"" +
                 std::string(kStateFormat) + "\")");
    }
    auto it = ck.metadata.find("model");
    if (it == ck.metadata.end() || it->second != o.model) {
      throw fail("holds model " + (it == ck.metadata.end() ? std::string("(none)") : it->second) +
                 ", the run's config.json says " + o.model);
    }
    try {
      model.load_state_dict(model_state);
    } catch (const std::exception& e) {
      throw fail(std::string("does not fit the model: ") + e.what());
    }
    auto m = ck.metadata.find("metrics");
    if (m == ck.metadata.end()) throw fail("has no metrics entry");
    r.metrics = first_metrics_rows(m->second, r.epoch, path);
  } else {
    // Version 1: the model from model.safetensors, which must be of the same epoch.
    Checkpoint mk;
    try {
      mk = load_safetensors(model_path);
    } catch (const std::runtime_error& e) {
      throw ResumeError(e.what());
    }
    const int64_t model_epoch = meta_int(mk, model_path, "epoch", 0, INT64_MAX / 2);
    if (model_epoch != r.epoch) {
      throw ResumeError("\"" + model_path + "\" is from epoch " + std::to_string(model_epoch) +
                        " but \"" + path + "\" from epoch " + std::to_string(r.epoch) +
                        " (the run stopped between the two writes); resuming would mix epochs, "
                        "so this run cannot be continued");
    }
    try {
      model.load_state_dict(mk.tensors);
    } catch (const std::exception& e) {
      throw ResumeError("\"" + model_path + "\" does not fit the model: " + e.what());
    }
    std::string text;
    try {
      text = read_small_file(run_dir + "/metrics.csv", kMaxMetricsBytes, "metrics");
    } catch (const std::runtime_error& e) {
      throw ResumeError(e.what());
    }
    r.metrics = first_metrics_rows(text, r.epoch, run_dir + "/metrics.csv");
  }
  // Every optimizer buffer: the expected name, and 0 values (never updated) or the parameter's.
  const auto buffers = opt.state_buffers();
  if (saved_buffers.size() != buffers.size()) {
    throw fail("holds " + std::to_string(saved_buffers.size()) +
               " optimizer buffers, this run's optimizer " + name_of(o.optimizer) + " has " +
               std::to_string(buffers.size()));
  }
  std::vector<std::string> kinds;  // version 1 stored the buffers kind by kind
  for (const auto& b : buffers) {
    if (std::find(kinds.begin(), kinds.end(), b.kind) == kinds.end()) kinds.push_back(b.kind);
  }
  for (const auto& b : buffers) {
    const size_t v1_index =
        static_cast<size_t>(std::find(kinds.begin(), kinds.end(), b.kind) - kinds.begin()) *
            params.size() +
        b.param;
    const std::string name = v2 ? "optimizer." + params[b.param].first + "." + b.kind
                                : "optimizer." + std::to_string(v1_index);
    auto it = saved_buffers.find(name);
    if (it == saved_buffers.end()) {
      throw fail("has no optimizer buffer \"" + name +
                 "\" (was it written with another optimizer or model?)");
    }
    const Tensor& t = it->second;
    const int64_t want = params[b.param].second.numel();
    if (t.dim() != 1 || (t.numel() != 0 && t.numel() != want)) {
      throw fail("has optimizer buffer \"" + name + "\" of shape " + shape_str(t.shape()) +
                 "; parameter \"" + params[b.param].first + "\" needs [" + std::to_string(want) +
                 "] (or [0] before its first update)");
    }
    const Storage& v = t.vec();
    b.values->assign(v.begin(), v.end());
  }
  opt.set_step_count(optimizer_steps);
  return r;
}

// ---- results.json ---------------------------------------------------------------------------

void write_results(const std::string& path, const TrainOptions& o, const RunResult& r,
                   const std::vector<MetricsRow>& rows) {
  // Accuracies and losses as metrics.csv holds them: null where an epoch was not evaluated.
  const auto opt = [](const std::optional<double>& v) { return v ? json(*v) : json(nullptr); };
  json test_accuracy = nullptr, test_loss = nullptr, best = nullptr, best_epoch = nullptr;
  json train_loss = nullptr, train_accuracy = nullptr;
  if (!rows.empty()) {
    test_accuracy = opt(rows.back().test_accuracy);
    test_loss = opt(rows.back().test_loss);
    train_loss = rows.back().train_loss;
    train_accuracy = rows.back().train_accuracy;
  }
  for (const MetricsRow& m : rows) {
    if (m.test_accuracy && (best.is_null() || *m.test_accuracy > best.get<double>())) {
      best = *m.test_accuracy;
      best_epoch = m.epoch;
    }
  }
  json tta_accuracy = nullptr;
  if (o.tta == 0)
    tta_accuracy = test_accuracy;
  else if (r.finished)
    tta_accuracy = r.test_accuracy_tta;
  // Divides by the exact count per unit, so that the JSON shows 1966.995, not 1966.9950000000001
  // (round(v / 0.001) * 0.001 carries 0.001's binary error).
  const auto rounded = [](double v, double unit) {
    const double per_unit = std::round(1.0 / unit);
    return std::round(v * per_unit) / per_unit;
  };
  const json epochs_planned =
      o.epochs == std::floor(o.epochs) ? json(static_cast<int64_t>(o.epochs)) : json(o.epochs);
  const nlohmann::ordered_json out = {{"recipe", name_of(o.recipe)},
                                      {"model", o.model},
                                      {"seed", o.seed},
                                      {"threads", o.threads},
                                      {"finished", r.finished},
                                      {"epochs", r.epochs_done},
                                      {"epochs_planned", epochs_planned},
                                      {"steps", r.steps},
                                      {"trainable_parameters", r.trainable_parameters},
                                      {"test_accuracy", test_accuracy},
                                      {"test_loss", test_loss},
                                      {"best_test_accuracy", best},
                                      {"best_epoch", best_epoch},
                                      {"tta", o.tta},
                                      {"test_accuracy_tta", tta_accuracy},
                                      {"train_loss", train_loss},
                                      {"train_accuracy", train_accuracy},
                                      {"images_per_second", rounded(r.images_per_second, 0.1)},
                                      {"train_seconds", rounded(r.train_seconds, 0.001)},
                                      {"eval_seconds", rounded(r.eval_seconds, 0.001)},
                                      {"total_seconds", rounded(r.total_seconds, 0.001)}};
  write_file_atomic(path, out.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
}

}  // namespace minidl::train
