// Writes the seed corpus of the fuzz harnesses (tests/fuzz/corpus/<harness>/): a small valid
// input of each kind written by minidl's or stb's own writers, plus a few edge cases. Run by
// hand when the seeds need to change; the files are committed, except the CIFAR-10 ones: no
// CIFAR-format file is kept in the repository, so ctest (fixture fuzz_seeds_cifar10) and
// scripts/fuzz.sh write those into the build folder each time (`... DIR cifar10`).
//
//   cmake --build build --target minidl_fuzz_seeds
//   build/tests/fuzz/minidl_fuzz_seeds tests/fuzz/corpus
//
// The CIFAR-10 seeds are synthetic records in the binary layout (label byte, 3,072 pixel bytes
// of a made-up gradient): no bytes of the dataset are copied into the repository.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include <stb/stb_image_write.h>

#include "train/run_dir.hpp"
#include "train/trainer.hpp"
#include "core/safetensors.hpp"
#include "tests/byte_writer.hpp"

namespace fs = std::filesystem;
using minidl::testing::be32;
using minidl::testing::Bytes;
using minidl::testing::png_chunk;

namespace {

void write_file(const fs::path& p, const Bytes& b) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

void write_text(const fs::path& p, const std::string& s) {
  write_file(p, Bytes(s.begin(), s.end()));
}

Bytes read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

Bytes prefix(const Bytes& b, size_t n) {
  return Bytes(b.begin(), b.begin() + static_cast<long>(std::min(n, b.size())));
}

void safetensors_seeds(const fs::path& dir) {
  using minidl::Shape;
  using minidl::Tensor;
  minidl::NamedTensors tensors;
  Tensor w(Shape{2, 1, 2, 2});
  for (int64_t i = 0; i < w.numel(); ++i)
    w.mutable_data()[i] = 0.125f * static_cast<float>(i) - 0.5f;
  Tensor b(Shape{2});
  b.mutable_data()[0] = 1.0f;
  b.mutable_data()[1] = -2.0f;
  tensors.emplace_back("conv.weight", w);
  tensors.emplace_back("bn.bias", b);
  const fs::path valid = dir / "valid.safetensors";
  fs::create_directories(dir);
  minidl::save_safetensors(valid.string(), tensors,
                           {{"model", "resnet8"}, {"normalization", "cifar10"}});
  minidl::save_safetensors((dir / "no_tensors.safetensors").string(), {}, {});
  const Bytes v = read_file(valid);
  write_file(dir / "truncated.safetensors", prefix(v, v.size() - 10));
  // A PyTorch-style file: an I64 num_batches_tracked (skipped) next to an F32 scalar.
  std::string header =
      R"({"bn.num_batches_tracked":{"dtype":"I64","shape":[],"data_offsets":[0,8]},)"
      R"("s":{"dtype":"F32","shape":[],"data_offsets":[8,12]}})";
  while (header.size() % 8) header += ' ';
  Bytes pt;
  for (int i = 0; i < 8; ++i) pt.push_back(static_cast<uint8_t>(header.size() >> (8 * i)));
  pt.insert(pt.end(), header.begin(), header.end());
  for (int i = 0; i < 8; ++i) pt.push_back(i == 0 ? 7 : 0);
  const float one = 1.0f;
  const auto* ob = reinterpret_cast<const uint8_t*>(&one);
  pt.insert(pt.end(), ob, ob + 4);
  write_file(dir / "pytorch_style.safetensors", pt);
  write_file(dir / "header_length_too_big.safetensors",
             Bytes{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, '{', '}'});
}

/// One synthetic CIFAR-10 record: `label`, then R, G and B planes of 32 x 32 bytes.
Bytes cifar10_record(uint8_t label) {
  Bytes r{label};
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x)
        r.push_back(static_cast<uint8_t>(8 * x + 4 * y + 85 * c + label));
  return r;
}

void cifar10_seeds(const fs::path& dir) {
  const size_t rec = 3073;
  Bytes test = cifar10_record(3);
  const Bytes second = cifar10_record(8);
  test.insert(test.end(), second.begin(), second.end());
  write_file(dir / "two_records.bin", test);
  write_file(dir / "empty.bin", {});
  write_file(dir / "short_record.bin", prefix(test, 100));
  Bytes bad = prefix(test, rec);
  bad[0] = 10;
  write_file(dir / "label_10.bin", bad);
}

void config_seeds(const fs::path& dir) {
  minidl::train::TrainOptions c;
  c.data = "/data/cifar-10-batches-bin";
  c.out = "runs/seed";
  write_text(dir / "default.json", minidl::train::config_to_json(c).dump(2) + "\n");
  c.optimizer = minidl::train::OptimizerKind::kAdamW;
  c.schedule = minidl::optim::ScheduleKind::kMultistep;
  c.milestones = {80, 120};
  c.train_only = minidl::optim::TrainOnly::kBn;
  c.bn_stats = minidl::train::BnStatsMode::kRunning;
  c.limit_train = 2000;
  const std::string multistep = minidl::train::config_to_json(c).dump();
  write_text(dir / "multistep.json", multistep + "\n");
  minidl::train::TrainOptions a = minidl::train::airbench94_options(512, 4);
  a.data = c.data;
  write_text(dir / "airbench94.json", minidl::train::config_to_json(a).dump(2) + "\n");
  write_text(dir / "empty_object.json", "{}");
  write_text(dir / "not_an_object.json", "[1, 2.5, \"x\", null]");
  write_text(dir / "wrong_types.json", R"({"epochs": "ten", "lr": [0.1], "augment": 1})");
  write_text(dir / "truncated.json", multistep.substr(0, multistep.size() / 2));
}

void cli_seeds(const fs::path& dir) {
  auto args = [](std::initializer_list<const char*> words) {
    std::string s;
    for (const char* w : words) s += std::string(s.empty() ? "" : "\n") + w;
    return s;
  };
  write_text(dir / "train.args", args({"train", "--model", "cnn", "--epochs", "2", "--lr", "0.05",
                                       "--data", "/nonexistent", "--out", "runs/x"}));
  write_text(dir / "train_empty_out.args", args({"train", "--out", "", "--data", "d"}));
  write_text(dir / "train_resume.args",
             args({"train", "--resume", "runs/none", "--lr", "0.5", "--threads", "1"}));
  write_text(dir / "airbench.args",
             args({"train", "--recipe", "airbench94", "--tta", "1", "--batch-size", "512",
                   "--epochs", "4", "--data", "d", "--overwrite"}));
  write_text(dir / "renorm.args",
             args({"train", "--bn-renorm", "--renorm-ramp", "0.1", "0.2", "--schedule", "multistep",
                   "--milestones", "3", "--warmup", "0", "--data", "d"}));
  write_text(dir / "eval.args",
             args({"eval", "--checkpoint", "m.safetensors", "--batch-size", "0", "--json"}));
  write_text(dir / "bench.args", args({"bench", "--batch-size", "65536", "--mode", "eval"}));
  write_text(dir / "experiment.args", args({"experiment", "bn-only", "--epochs", "1"}));
  write_text(dir / "unknown.args", args({"foo", "--bar"}));
}

void resume_seeds(const fs::path& dir) {
  using namespace minidl;
  train::TrainOptions o;
  o.model = "resnet8_1";
  o.epochs = 3;
  o.batch_size = 64;
  o.limit_train = 128;
  o.schedule = optim::ScheduleKind::kMultistep;
  o.milestones = {2};
  o.warmup_epochs = 0;
  o.data = "d";
  o.out = "r";
  const fs::path scratch = fs::temp_directory_path() / "minidl_resume_seed";
  fs::create_directories(scratch);
  auto seed = [&](const train::TrainOptions& c, const std::string& name, int64_t epochs_done) {
    std::shared_ptr<Module> model = create_model(c.model, train::model_options(c));
    std::unique_ptr<optim::Optimizer> opt = train::make_optimizer(c, *model);
    std::string metrics = train::metrics_header();
    for (int64_t e = 1; e <= epochs_done; ++e) {
      train::MetricsRow r;
      r.epoch = e;
      r.test_accuracy = 0.1;
      r.test_loss = 2.3;
      metrics += train::format_metrics_row(r);
    }
    const std::string state = (scratch / "train_state.safetensors").string();
    train::save_train_state(state, *model, *opt, c.model, epochs_done, epochs_done * 2, metrics);
    const std::string config = train::config_to_json(c).dump();
    Bytes b = {static_cast<uint8_t>(config.size() & 0xff),
               static_cast<uint8_t>(config.size() >> 8)};
    b.insert(b.end(), config.begin(), config.end());
    const Bytes st = read_file(state);
    b.insert(b.end(), st.begin(), st.end());
    write_file(dir / name, b);
  };
  seed(o, "sgd_epoch1.bin", 1);
  train::TrainOptions adam = o;
  adam.optimizer = train::OptimizerKind::kAdamW;
  adam.model = "resnet8_2";
  seed(adam, "adamw_epoch2.bin", 2);
  fs::remove_all(scratch);
}

void image_seeds(const fs::path& dir) {
  fs::create_directories(dir);
  auto path = [&](const char* name) { return (dir / name).string(); };
  Bytes rgb(32 * 32 * 3);
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 32; ++x) {
      uint8_t* p = &rgb[static_cast<size_t>((y * 32 + x) * 3)];
      p[0] = static_cast<uint8_t>(x * 8);
      p[1] = static_cast<uint8_t>(y * 8);
      p[2] = 128;
    }
  if (!stbi_write_png(path("rgb_32x32.png").c_str(), 32, 32, 3, rgb.data(), 32 * 3))
    throw std::runtime_error("png");
  const Bytes gray = {0, 60, 120, 180, 240, 30, 90, 150, 210, 255, 10, 20, 30, 40, 50};
  if (!stbi_write_png(path("gray_5x3.png").c_str(), 5, 3, 1, gray.data(), 5))
    throw std::runtime_error("png");
  if (!stbi_write_bmp(path("rgb_4x4.bmp").c_str(), 4, 4, 3, rgb.data()))
    throw std::runtime_error("bmp");
  if (!stbi_write_tga(path("rgb_4x4.tga").c_str(), 4, 4, 3, rgb.data()))
    throw std::runtime_error("tga");
  if (!stbi_write_jpg(path("rgb_8x8.jpg").c_str(), 8, 8, 3, rgb.data(), 50))
    throw std::runtime_error("jpg");
  const float hdr[2 * 2 * 3] = {0.1f, 0.2f, 0.3f, 1.0f, 2.0f, 4.0f,
                                0.5f, 0.5f, 0.5f, 8.0f, 0.0f, 1.0f};
  if (!stbi_write_hdr(path("rgb_2x2.hdr").c_str(), 2, 2, 3, hdr)) throw std::runtime_error("hdr");
  Bytes pgm = {'P', '5', '\n', '2', ' ', '2', '\n', '2', '5', '5', '\n', 0, 85, 170, 255};
  write_file(dir / "gray_2x2.pgm", pgm);
  // The classic 1x1 GIF (GIF89a, global palette of 2 colours, one LZW-coded pixel).
  write_file(dir / "one_pixel.gif",
             Bytes{'G', 'I',  'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, 0xff, 0xff, 0xff, 0,   0,
                   0,   0x2c, 0,   0,   0,   0,   1, 0, 1, 0, 0,    2, 2, 0x44, 0x01, 0,    0x3b});
  // A PNG whose header claims 12000 x 12000 RGB pixels (no image data): refused by size.
  Bytes big = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  Bytes ihdr;
  be32(ihdr, 12000);
  be32(ihdr, 12000);
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});
  png_chunk(big, "IHDR", ihdr);
  png_chunk(big, "IEND", {});
  write_file(dir / "header_12000x12000.png", big);
  const Bytes png = read_file(dir / "rgb_32x32.png");
  write_file(dir / "truncated.png", prefix(png, png.size() / 2));
  write_file(dir / "empty.img", {});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: %s CORPUS_DIR [HARNESS...] (e.g. tests/fuzz/corpus; harnesses: "
                 "safetensors cifar10 config image cli resume, default all)\n",
                 argv[0]);
    return 2;
  }
  try {
    const fs::path root = argv[1];
    const std::vector<std::string> all = {"safetensors", "cifar10", "config",
                                          "image",       "cli",     "resume"};
    const std::vector<std::string> wanted =
        argc > 2 ? std::vector<std::string>(argv + 2, argv + argc) : all;
    for (const std::string& h : wanted) {
      if (h == "safetensors")
        safetensors_seeds(root / h);
      else if (h == "cli")
        cli_seeds(root / h);
      else if (h == "resume")
        resume_seeds(root / h);
      else if (h == "cifar10")
        cifar10_seeds(root / h);
      else if (h == "config")
        config_seeds(root / h);
      else if (h == "image")
        image_seeds(root / h);
      else
        throw std::invalid_argument("unknown harness \"" + h + "\"");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "minidl_fuzz_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
