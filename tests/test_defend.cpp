// minidl tests — issue 30, "nothing lost, nothing hangs": the run directory's lock and atomic
// writes, resume conflicts, special files, sizes from untrusted input, image formats,
// safetensors layout, signals, and two train processes started on one folder. Each check
// asserts the message a user sees, in part, with the file or flag it names.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/file_io.hpp"
#include "core/safetensors.hpp"
#include "core/system.hpp"
#include "data/image.hpp"
#include "layers/models/registry.hpp"
#include "layers/models/resnet.hpp"
#include "tests/test_util.hpp"
#include "train/run_dir.hpp"
#include "train/trainer.hpp"

using minidl::testing::data_dir;
using minidl::testing::fresh_dir;
using minidl::testing::read_file;
using minidl::testing::run_cli;
using minidl::testing::safetensors_bytes;
using minidl::testing::tensors_of;
using minidl::testing::write_file;

using namespace minidl;
namespace fs = std::filesystem;

namespace {

/// What `f` throws (std::exception's what()), or "" when it returns.
template <class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

/// The flags of a tiny run: cnn on 128 training and 50 test images, one thread.
std::string tiny_flags(int epochs) {
  return " --model cnn --epochs " + std::to_string(epochs) +
         " --batch-size 64 --limit-train 128 --limit-test 50 --threads 1 --data " + data_dir();
}

}  // namespace

// ---- 1. the run directory's lock and temporary files ----------------------------------------

TEST_CASE("atomic writes never go through a link someone left at the temporary's name",
          "[defend][run_dir]") {
  const std::string dir = fresh_dir("defend_atomic");
  fs::create_directories(dir);
  const std::string victim = dir + "/victim.txt", path = dir + "/model.safetensors";
  write_file(victim, "precious");
  fs::create_symlink(victim, path + ".tmp");  // the name the old writer used
  write_file_atomic(path, "new bytes");
  CHECK(read_file(victim) == "precious");
  CHECK(read_file(path) == "new bytes");
  // A link at the target itself is replaced by the file, its target untouched.
  fs::remove(path);
  fs::create_symlink(victim, path);
  write_file_atomic(path, "again");
  CHECK_FALSE(fs::is_symlink(path));
  CHECK(read_file(victim) == "precious");
  CHECK((fs::status(path).permissions() & fs::perms::all) == (fs::perms(0644)));
  // No temporary is left behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir))
    files += is_atomic_temporary(e.path().filename());
  CHECK(files == 0);
  fs::remove_all(dir);
}

TEST_CASE("a run directory is locked by one process, a second writer is refused with the pid",
          "[defend][run_dir]") {
  const std::string dir = fresh_dir("defend_lock");
  {
    train::RunLock first(dir);
    CHECK(std::stol(read_file(dir + "/run.lock")) == static_cast<long>(getpid()));
    try {
      train::RunLock second(dir);
      FAIL("a second lock was taken");
    } catch (const train::RunInUse& e) {
      CHECK(e.holder_pid == static_cast<long>(getpid()));
      CHECK_THAT(e.what(), Catch::Contains("run directory \"" + dir + "\" is in use") &&
                               Catch::Contains("(pid " + std::to_string(getpid()) + " holds \"" +
                                               dir + "/run.lock\")"));
    }
  }
  // Released with its holder; taking it removes the temporaries a killed writer left.
  write_file(dir + "/model.safetensors.tmp-Ab12Cd", "half a file");
  write_file(dir + "/notes.tmp", "kept");
  { train::RunLock again(dir); }
  CHECK_FALSE(fs::exists(dir + "/model.safetensors.tmp-Ab12Cd"));
  CHECK(fs::exists(dir + "/notes.tmp"));
  // The lock file is never opened through a link.
  fs::remove(dir + "/run.lock");
  fs::create_symlink(dir + "/notes.tmp", dir + "/run.lock");
  CHECK_THAT(message_of([&] { train::RunLock l(dir); }),
             Catch::Contains(dir + "/run.lock") && Catch::Contains("symbolic link"));
  fs::remove_all(dir);
}

TEST_CASE("train refuses an existing run, empty paths, and writes config.json at the first epoch",
          "[defend][run_dir][cli]") {
  const std::string dir = fresh_dir("defend_out");
  auto [s1, o1] = run_cli("train" + tiny_flags(1) + " --out " + dir);
  REQUIRE(s1 == 0);
  const std::string config = read_file(dir + "/config.json");
  const auto weights = tensors_of(dir + "/model.safetensors");
  auto [s2, o2] = run_cli("train" + tiny_flags(1) + " --lr 0.05 --out " + dir);
  CHECK(s2 == 1);
  CHECK_THAT(o2, Catch::Contains("minidl: error: --out " + dir + ": run directory \"" + dir +
                                 "\" already holds a run (config.json, ") &&
                     Catch::Contains("continue it with --resume " + dir +
                                     ", replace it with --overwrite, or choose another --out"));
  CHECK(read_file(dir + "/config.json") == config);
  // --overwrite: a run that diverges at once writes nothing, the old run stays whole.
  auto [s3, o3] = run_cli("train" + tiny_flags(1) +
                          " --lr 1000 --schedule constant --warmup 0 --overwrite --out " + dir);
  CHECK(s3 == 1);
  CHECK_THAT(o3, Catch::Contains("training diverged"));
  CHECK(read_file(dir + "/config.json") == config);
  CHECK(tensors_of(dir + "/model.safetensors") == weights);
  // --overwrite of a run that trains: the new run's files replace the old ones.
  auto [s4, o4] = run_cli("train" + tiny_flags(1) + " --lr 0.05 --overwrite --out " + dir);
  CHECK(s4 == 0);
  CHECK_THAT(read_file(dir + "/config.json"), Catch::Contains("\"lr\": 0.05"));
  // Empty paths and contradictory flags are refused by name.
  auto [s5, o5] = run_cli("train" + tiny_flags(1) + " --out ''");
  CHECK((s5 == 1 &&
         o5.find("--out: give a folder for the run (got an empty path)") != std::string::npos));
  auto [s6, o6] = run_cli("train --resume '' --data " + data_dir());
  CHECK((s6 == 1 &&
         o6.find("--resume: give the run directory (got an empty path)") != std::string::npos));
  auto [s7, o7] = run_cli("train --resume " + dir + " --overwrite --data " + data_dir());
  CHECK((s7 == 1 &&
         o7.find("--overwrite replaces a run, --resume continues it") != std::string::npos));
  // A run that fails before its first epoch leaves no config.json.
  const std::string fresh = dir + "_fail";
  auto [s8, o8] =
      run_cli("train" + tiny_flags(1) + " --lr 1000 --schedule constant --warmup 0 --out " + fresh);
  CHECK(s8 == 1);
  CHECK_FALSE(fs::exists(fresh + "/config.json"));
  CHECK(train::run_files(fresh).empty());
  fs::remove_all(dir);
  fs::remove_all(fresh);
}

// ---- 2. resume means resume -----------------------------------------------------------------

TEST_CASE("resume refuses a flag that differs from the run's config.json, naming both values",
          "[defend][resume][cli]") {
  const std::string dir = fresh_dir("defend_resume");
  auto [s0, o0] = run_cli("train" + tiny_flags(2) + " --stop-after 1 --out " + dir);
  REQUIRE(s0 == 0);
  const std::string resume = "train --resume " + dir + " --data " + data_dir();
  auto [s1, o1] = run_cli(resume + " --lr 0.5");
  CHECK(s1 == 1);
  CHECK_THAT(o1, Catch::Contains("--lr 0.5: the run in " + dir +
                                 " was trained with lr 0.1 (its "
                                 "config.json); a resumed run keeps its settings (only "
                                 "--stop-after, --threads, --epochs, --data may be given"));
  auto [s2, o2] = run_cli(resume + " --model resnet8");
  CHECK_THAT(o2,
             Catch::Contains("--model resnet8: the run in " + dir + " was trained with model cnn"));
  auto [s3, o3] = run_cli(resume + " --warmup 2");
  CHECK_THAT(
      o3, Catch::Contains("--warmup 2: the run in " + dir + " was trained with warmup_epochs -1"));
  auto [s4, o4] = run_cli(resume + " --out " + dir + "_other");
  CHECK_THAT(o4, Catch::Contains("--out " + dir +
                                 "_other: --resume continues the run in its own "
                                 "folder, " +
                                 dir));
  // The schedule (onecycle over 2 epochs) follows the run's length: --epochs cannot change it.
  auto [s5, o5] = run_cli(resume + " --epochs 3");
  CHECK(s5 == 1);
  CHECK_THAT(o5, Catch::Contains("--epochs 3: the run in " + dir + " was planned for 2 epochs") &&
                     Catch::Contains("resume it with --epochs 2"));
  // Flags equal to the saved ones are fine; the threads default to the run's (1, not 2).
  auto [s6, o6] = run_cli(resume + " --model cnn --lr 0.1 --epochs 2");
  CHECK(s6 == 0);
  CHECK_THAT(o6, Catch::Contains(", 1 thread\n") && Catch::Contains("; run folder " + dir + "\n"));
  fs::remove_all(dir);
}

TEST_CASE("resume with --epochs extends a run whose schedule does not depend on its length",
          "[defend][resume][cli]") {
  const std::string dir = fresh_dir("defend_extend");
  const std::string flags = tiny_flags(1) + " --schedule multistep --milestones 1 --warmup 0";
  auto [s0, o0] = run_cli("train" + flags + " --out " + dir);
  REQUIRE(s0 == 0);
  auto [s1, o1] = run_cli("train --resume " + dir + " --epochs 2 --data " + data_dir());
  INFO(o1);
  CHECK(s1 == 0);
  CHECK_THAT(o1, Catch::Contains("resuming " + dir +
                                 " with --epochs 2: the run is extended "
                                 "from 1 epoch to 2 epochs (its multistep schedule does not "
                                 "depend"));
  CHECK(train::read_config(dir + "/config.json").epochs == 2);
  // The same two epochs in one run: bit-identical.
  const std::string whole = dir + "_whole";
  auto [s2, o2] = run_cli("train" + tiny_flags(2) +
                          " --schedule multistep --milestones 1 --warmup 0 --out " + whole);
  REQUIRE(s2 == 0);
  CHECK(tensors_of(dir + "/model.safetensors") == tensors_of(whole + "/model.safetensors"));
  auto [s3, o3] = run_cli("train --resume " + dir + " --epochs 1 --data " + data_dir());
  CHECK_THAT(o3, Catch::Contains("--epochs 1: the run in " + dir +
                                 " is planned for 2 epochs; a "
                                 "resumed run can only be extended"));
  fs::remove_all(dir);
  fs::remove_all(whole);
}

// ---- 3. special files and sizes from untrusted input ----------------------------------------

TEST_CASE("readers refuse FIFOs, devices and oversized files before reading", "[defend][files]") {
  const std::string dir = fresh_dir("defend_special");
  fs::create_directories(dir);
  const std::string fifo = dir + "/model.safetensors";
  REQUIRE(mkfifo(fifo.c_str(), 0644) == 0);
  CHECK_THAT(message_of([&] { load_safetensors(fifo); }),
             Catch::Contains("checkpoint \"" + fifo +
                             "\" is not a regular file (a FIFO, device or socket)"));
  CHECK_THAT(message_of([&] { load_safetensors(dir); }),
             Catch::Contains("checkpoint \"" + dir + "\" is a folder, expected a file"));
  fs::create_symlink("/dev/zero", dir + "/config.json");
  CHECK_THAT(message_of([&] { train::read_config(dir + "/config.json"); }),
             Catch::Contains("run configuration \"" + dir + "/config.json\" is not a regular"));
  fs::remove(dir + "/config.json");
  write_file(dir + "/config.json", std::string(2 << 20, ' '));
  CHECK_THAT(
      message_of([&] { train::read_config(dir + "/config.json"); }),
      Catch::Contains("\"" + dir + "/config.json\" is 2097152 bytes, more than the 1048576"));
  const std::string metrics = dir + "/metrics.csv";
  REQUIRE(mkfifo(metrics.c_str(), 0644) == 0);
  CHECK_THAT(message_of([&] { train::read_metrics(metrics); }),
             Catch::Contains("metrics \"" + metrics + "\" is not a regular file"));
  // The CLI: eval on a FIFO ends at once, naming it.
  auto [s, o] = run_cli("eval --checkpoint " + fifo + " --data " + data_dir());
  CHECK(s == 1);
  CHECK_THAT(o, Catch::Contains("minidl: error: checkpoint \"" + fifo + "\" is not a regular"));
  fs::remove_all(dir);
}

TEST_CASE("model sizes are checked from the name before anything is built", "[defend][sizes]") {
  // The estimate is the count of the model built.
  for (const char* name : {"resnet8", "resnet20", "resnet14_4", "resnet32_3"}) {
    for (NormKind norm : {NormKind::kBatch, NormKind::kNone}) {
      ModelOptions mo;
      mo.norm = norm;
      mo.gn_groups = 1;
      const auto m = create_model(name, mo);
      const std::string n = name;
      const size_t us = n.find('_');
      const int64_t depth =
          std::stoll(n.substr(6, us == std::string::npos ? std::string::npos : us - 6));
      const int64_t width = us == std::string::npos ? 16 : std::stoll(n.substr(us + 1));
      INFO(name);
      CHECK(CifarResNet::parameter_count(depth, width, 10, norm) == train::count_parameters(*m));
    }
  }
  const auto start = std::chrono::steady_clock::now();
  CHECK_THAT(message_of([] { create_model("resnet2000_512"); }),
             Catch::Contains("model \"resnet2000_512\" would have 32,980,957,706 parameters, more "
                             "than the 268,435,456 minidl builds"));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));
  // A 60-byte checkpoint naming a huge model is refused, naming the file.
  const std::string dir = fresh_dir("defend_size");
  fs::create_directories(dir);
  const std::string path = dir + "/huge.safetensors";
  write_file(path, safetensors_bytes(R"({"__metadata__":{"model":"resnet1994_512"}})", ""));
  CHECK_THAT(message_of([&] { train::load_model(path); }),
             Catch::Contains("checkpoint \"" + path +
                             "\" (metadata \"model\"): model "
                             "\"resnet1994_512\" would have ") &&
                 Catch::Contains("more than the 268,435,456 minidl builds"));
  fs::remove_all(dir);
}

TEST_CASE("a batch whose step does not fit in memory is refused with the bytes needed",
          "[defend][sizes]") {
  const train::StepMemory m = train::measure_step_memory("resnet8", ModelOptions{}, true);
  CHECK(m.bytes_per_image > 100000);  // resnet8 keeps well over 100 KB of activations per image
  CHECK(m.fixed_bytes > 4 * 78000);   // its 78 K weights, their gradients and momentum
  CHECK(m.at(INT64_C(1) << 62) == INT64_MAX);
  const int64_t available = available_memory_bytes();
  REQUIRE(available > 0);
  const int64_t needed = train::measure_step_memory("resnet20", ModelOptions{}, true).at(65536);
  if (needed > available) {  // 137 GiB on the machines minidl was tested on
    auto [s, o] = run_cli("bench --batch-size 65536 --steps 1 --warmup 0");
    CHECK(s == 1);
    CHECK_THAT(o, Catch::Contains("minidl: error: --batch-size 65536: a training step of "
                                  "resnet20 needs about ") &&
                      Catch::Contains(" bytes: ") &&
                      Catch::Contains(" per image), more than the ") &&
                      Catch::Contains("this machine has available"));
    CHECK_THAT(o, !Catch::Contains("bad_alloc"));
  }
  CHECK_NOTHROW(train::check_batch_memory("resnet8", ModelOptions{}, 64, true));
}

TEST_CASE("eval --json prints a path that is not UTF-8", "[defend][files][cli]") {
  const std::string dir = fresh_dir("defend_utf8");
  train::TrainOptions o = minidl::testing::small_options("defend_utf8_run", 1, 128);
  o.limit_test = 50;
  o.model = "cnn";
  minidl::testing::fit(o);
  fs::create_directories(dir);
  const std::string odd = dir + "/bad\xff.safetensors";
  fs::copy_file(o.out + "/model.safetensors", odd);
  auto [s, out] = run_cli("eval --json --limit 20 --checkpoint '" + odd + "' --data " + data_dir());
  CHECK(s == 0);
  CHECK_THAT(out, Catch::Contains("\"checkpoint\":\"" + dir + "/bad\xef\xbf\xbd.safetensors\""));
  CHECK_THAT(out, !Catch::Contains("type_error"));
  fs::remove_all(dir);
  fs::remove_all(o.out);
}

// ---- 4. images ------------------------------------------------------------------------------

namespace {
/// A 24-bit BMP (BITMAPINFOHEADER) of w x h, rows from `rows` (top row first, BGR); a negative
/// `h` stores the rows top-down, a positive one bottom-up, as the format allows.
std::string bmp(int32_t w, int32_t h, const std::vector<std::string>& rows) {
  auto le = [](std::string& s, uint32_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  std::string pixels;
  const int32_t n = h < 0 ? -h : h;
  for (int32_t r = 0; r < n && !rows.empty(); ++r) {
    std::string row = rows[static_cast<size_t>(h < 0 ? r : n - 1 - r)];
    while (row.size() % 4) row.push_back('\0');
    pixels += row;
  }
  std::string b = "BM";
  le(b, static_cast<uint32_t>(54 + pixels.size()), 4);
  le(b, 0, 4);
  le(b, 54, 4);
  le(b, 40, 4);
  le(b, static_cast<uint32_t>(w), 4);
  le(b, static_cast<uint32_t>(h), 4);
  le(b, 1, 2);
  le(b, 24, 2);
  le(b, 0, 4);
  le(b, static_cast<uint32_t>(pixels.size()), 4);
  le(b, 2835, 4);
  le(b, 2835, 4);
  le(b, 0, 4);
  le(b, 0, 4);
  return b + pixels;
}
}  // namespace

TEST_CASE("images: only PNG, JPEG and BMP reach stb_image, top-down BMP, too large named",
          "[defend][image]") {
  const std::string dir = fresh_dir("defend_image");
  fs::create_directories(dir);
  // The 49-byte Radiance HDR file on which Debian's stb_image 2.27 loops forever.
  const std::string hdr = dir + "/spin.png";
  write_file(hdr,
             std::string("#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 1 +X 1\n\x02\x02\x00\x01", 48) +
                 "\xff");
  CHECK_THAT(message_of([&] { data::load_image(hdr); }),
             Catch::Contains("image \"" + hdr +
                             "\" is in the HDR (Radiance) format; minidl reads "
                             "PNG, JPEG or BMP only"));
  const std::string gif = dir + "/a.gif";
  write_file(gif, "GIF89a\x01\x00\x01\x00\x80\x00\x00");
  CHECK_THAT(message_of([&] { data::load_image(gif); }),
             Catch::Contains("\"" + gif + "\" is in the GIF format"));
  const std::string tga = dir + "/a.tga";
  write_file(tga, std::string("\0\0\2\0\0\0\0\0\0\0\0\0\1\0\1\0\x18\0\0\0\0", 21));
  CHECK_THAT(message_of([&] { data::load_image(tga); }),
             Catch::Contains("\"" + tga +
                             "\" is not an image minidl can read: expected PNG, "
                             "JPEG or BMP"));
  // Top-down and bottom-up storage of the same 2 x 3 image give the same tensor.
  const std::vector<std::string> rows = {std::string("\x00\x00\xff\x00\xff\x00", 6),
                                         std::string("\xff\x00\x00\x10\x20\x30", 6),
                                         std::string("\x80\x80\x80\xff\xff\xff", 6)};
  write_file(dir + "/down.bmp", bmp(2, -3, rows));
  write_file(dir + "/up.bmp", bmp(2, 3, rows));
  const Tensor down = data::load_image(dir + "/down.bmp"), up = data::load_image(dir + "/up.bmp");
  CHECK(down.vec() == up.vec());
  // A header claiming more than the cap: "too large", with the pixel count and the cap, whether
  // or not stb would have read the header (a 20000 x 20000 PNG it refuses itself).
  write_file(dir + "/big.bmp", bmp(20000, -20000, {}));
  CHECK_THAT(message_of([&] { data::load_image(dir + "/big.bmp"); }),
             Catch::Contains("image \"" + dir +
                             "/big.bmp\" (BMP) is too large: 20000 x 20000 "
                             "pixels (400,000,000), more than the 67,108,864 pixels"));
  std::string png = "\x89PNG\r\n\x1a\n";
  png += std::string("\0\0\0\x0dIHDR\0\0\x4e\x20\0\0\x4e\x20\x08\x02\0\0\0\0\0\0\0", 25);
  write_file(dir + "/big.png", png);
  CHECK_THAT(message_of([&] { data::load_image(dir + "/big.png"); }),
             Catch::Contains("(PNG) is too large: 20000 x 20000 pixels (400,000,000)"));
  fs::remove_all(dir);
}

// ---- 5. safetensors layout ------------------------------------------------------------------

TEST_CASE("safetensors: tensor byte ranges disjoint and covering the buffer, names unique",
          "[defend][safetensors]") {
  const std::string dir = fresh_dir("defend_layout");
  fs::create_directories(dir);
  const std::string path = dir + "/x.safetensors";
  const std::string data(16, '\0');
  auto message = [&](const std::string& header, const std::string& bytes) {
    write_file(path, safetensors_bytes(header, bytes));
    return message_of([&] { load_safetensors(path); });
  };
  const std::string a = R"("a":{"dtype":"F32","shape":[2],"data_offsets":)";
  const std::string b = R"("b":{"dtype":"F32","shape":[2],"data_offsets":)";
  CHECK(message("{" + a + "[0,8]}," + b + "[8,16]}}", data).empty());
  CHECK_THAT(message("{" + a + "[0,8]}," + b + "[4,12]}}", data),
             Catch::Contains("checkpoint \"" + path + "\"") &&
                 Catch::Contains("tensors \"a\" [0, 8) and \"b\" [4, 12) overlap"));
  CHECK_THAT(message("{" + a + "[0,8]}," + b + "[0,8]}}", data.substr(0, 8)),
             Catch::Contains("tensors \"a\" [0, 8) and \"b\" [0, 8) overlap"));
  CHECK_THAT(message("{" + a + "[8,16]}}", data),
             Catch::Contains("data bytes [0, 8) belong to no tensor (before \"a\" [8, 16))"));
  CHECK_THAT(message("{" + a + "[0,8]}}", data),
             Catch::Contains("data bytes [8, 16) belong to no tensor (after \"a\" [0, 8))"));
  CHECK_THAT(message("{" + a + "[0,8]}," + a + "[8,16]}}", data),
             Catch::Contains("the header names \"a\" twice"));
  // minidl's own files, empty tensors (optimizer buffers before a first update) included.
  save_safetensors(path, {{"w", Tensor({3})}, {"empty", Tensor({0})}, {"v", Tensor({2, 2})}});
  CHECK(load_safetensors(path).tensors.size() == 3);
  fs::remove_all(dir);
}

// ---- 6. signals -----------------------------------------------------------------------------

TEST_CASE("SIGINT and SIGTERM end a run with one line naming the checkpoint kept",
          "[defend][signals][cli]") {
  const std::string dir = fresh_dir("defend_signal");
  fs::create_directories(dir);
  auto run_and_signal = [&](const std::string& out, int sig, bool after_first_epoch) {
    const std::string log = out + ".log";
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      execl(MINIDL_BINARY, "minidl", "train", "--model", "cnn", "--epochs", "40", "--batch-size",
            "64", "--limit-train", "512", "--limit-test", "50", "--threads", "1", "--data",
            data_dir().c_str(), "--out", out.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int waited = 0; waited < 60000; waited += 5) {
      const bool ready = after_first_epoch ? fs::exists(out + "/train_state.safetensors")
                                           : fs::exists(out + "/run.lock");
      if (ready) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    kill(pid, sig);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == sig);
    return read_file(log);
  };
  const std::string a = dir + "/a";
  const std::string la = run_and_signal(a, SIGINT, true);
  INFO(la);
  const int64_t kept = train::checkpoint_epoch(a);
  CHECK(kept >= 1);
  CHECK_THAT(la, Catch::Contains("minidl: interrupted (SIGINT); kept: the checkpoint of epoch " +
                                 std::to_string(kept) + " in " + a +
                                 "/model.safetensors, every file whole (continue with --resume " +
                                 a + ")\n"));
  CHECK_NOTHROW(train::load_model(a + "/model.safetensors"));
  const std::string b = dir + "/b";
  const std::string lb = run_and_signal(b, SIGTERM, false);
  INFO(lb);
  CHECK_THAT(lb, Catch::Contains("minidl: stopped (SIGTERM); no checkpoint of this run was "
                                 "written (no epoch finished); the files in " +
                                 b + " are whole\n"));
  fs::remove_all(dir);
}

// ---- two train processes on one folder ------------------------------------------------------

TEST_CASE("two train processes on one folder, 20 times: one runs, one is refused, resume exact",
          "[defend][run_dir][slow]") {
  const std::string base = fresh_dir("defend_race");
  fs::create_directories(base);
  const std::string flags = tiny_flags(2);
  auto [s0, o0] = run_cli("train" + flags + " --out " + base + "/whole");
  REQUIRE(s0 == 0);
  const auto reference = tensors_of(base + "/whole/model.safetensors");
  auto start = [&](const std::string& out, const std::string& log) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      const std::string args =
          "exec " + std::string(MINIDL_BINARY) + " train" + flags + " --stop-after 1 --out " + out;
      execl("/bin/sh", "sh", "-c", args.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    return pid;
  };
  std::mt19937 rng(30);
  std::uniform_int_distribution<int> offset_ms(0, 500);
  int in_use = 0, exists = 0;
  for (int trial = 0; trial < 20; ++trial) {
    const std::string out = base + "/run" + std::to_string(trial);
    const pid_t a = start(out, out + ".a.log");
    std::this_thread::sleep_for(std::chrono::milliseconds(offset_ms(rng)));
    const pid_t b = start(out, out + ".b.log");
    int sa = 0, sb = 0;
    waitpid(a, &sa, 0);
    waitpid(b, &sb, 0);
    INFO("trial " << trial << "\nA: " << read_file(out + ".a.log")
                  << "\nB: " << read_file(out + ".b.log"));
    REQUIRE(WIFEXITED(sa));
    REQUIRE(WIFEXITED(sb));
    CHECK(WEXITSTATUS(sa) + WEXITSTATUS(sb) == 1);  // exactly one ran
    const std::string refused = read_file(WEXITSTATUS(sa) ? out + ".a.log" : out + ".b.log");
    const bool busy = refused.find("is in use by another process (pid ") != std::string::npos;
    const bool done = refused.find("already holds a run") != std::string::npos;
    CHECK((busy || done));
    in_use += busy;
    exists += done;
    // The survivor's files are whole and readable, and resuming them ends bit-identically.
    CHECK(train::checkpoint_epoch(out) == 1);
    CHECK(train::read_metrics(out + "/metrics.csv").size() == 1);
    CHECK(train::read_config(out + "/config.json").epochs == 2);
    auto [rs, ro] = run_cli("train --resume " + out + " --data " + data_dir());
    CHECK(rs == 0);
    CHECK(tensors_of(out + "/model.safetensors") == reference);
    fs::remove_all(out);
  }
  INFO("refused as in use: " << in_use << ", as already holding a run: " << exists);
  CHECK(in_use >= 3);  // the offsets land both while the first runs and after it ended
  fs::remove_all(base);
}

// ---- the smaller items ----------------------------------------------------------------------

TEST_CASE("an unknown subcommand is named, recalibrate-bn refuses a model without BatchNorm",
          "[defend][cli]") {
  auto [s1, o1] = run_cli("trian --epochs 1");
  CHECK(s1 == 1);
  CHECK_THAT(o1, Catch::Contains("minidl: error: unknown subcommand \"trian\" (did you mean "
                                 "train?); the subcommands: train, eval, predict, bench, "
                                 "bn-stats, recalibrate-bn, experiment, plot\n"));
  train::TrainOptions o = minidl::testing::small_options("defend_gn", 1, 128);
  o.limit_test = 50;
  o.norm = NormKind::kGroup;
  o.gn_groups = 4;
  minidl::testing::fit(o);
  const std::string out = o.out + "/recalibrated.safetensors";
  auto [s2, o2] = run_cli("recalibrate-bn --checkpoint " + o.out + "/model.safetensors --out " +
                          out + " --limit 64 --data " + data_dir());
  CHECK(s2 == 1);
  CHECK_THAT(o2, Catch::Contains("--checkpoint " + o.out +
                                 "/model.safetensors: its model "
                                 "resnet8 has no BatchNorm layer, so there are no statistics to "
                                 "recalibrate (nothing written to " +
                                 out + ")"));
  CHECK_FALSE(fs::exists(out));
  fs::remove_all(o.out);
}
