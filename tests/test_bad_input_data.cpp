// Bad data files (issue 10, "every bad input a clear error"): empty, partial or odd CIFAR-10
// files and splits, and image files whose header claims a huge image. Each error must name the
// file and what was expected. Every test case's name contains "data" (ctest -R data).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/cifar10.hpp"
#include "data/image.hpp"
#include "byte_writer.hpp"

namespace fs = std::filesystem;
using namespace minidl::data;
using minidl::testing::be32;
using minidl::testing::Bytes;
using minidl::testing::png_chunk;

namespace {

/// A scratch folder under the temporary directory, unique to this process, removed at the end.
struct Scratch {
  fs::path path;
  explicit Scratch(const std::string& tag) {
    path = fs::temp_directory_path() /
           ("minidl_test_bad_data_" + tag + "_" + std::to_string(static_cast<long>(::getpid())));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

/// `records` valid CIFAR-10 records (labels 0, 1, ...; pixel bytes vary).
Bytes records(int64_t n) {
  Bytes b(static_cast<size_t>(n * kRecordBytes));
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 7 % 256);
  for (int64_t r = 0; r < n; ++r)
    b[static_cast<size_t>(r * kRecordBytes)] = static_cast<uint8_t>(r % 10);
  return b;
}

/// A complete small data folder: 2 records in each of data_batch_1..5.bin and test_batch.bin.
void write_split_files(const Scratch& s) {
  for (int i = 1; i <= 5; ++i)
    write_bytes(s.file("data_batch_" + std::to_string(i) + ".bin"), records(2));
  write_bytes(s.file("test_batch.bin"), records(2));
}

/// Runs f, which must throw E; returns the message.
template <typename E = std::runtime_error, typename F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  FAIL("no exception");
  return {};
}

bool has(const std::string& msg, const std::string& part) {
  return msg.find(part) != std::string::npos;
}

void le32(Bytes& b, uint32_t v) {
  for (int s = 0; s < 32; s += 8) b.push_back(static_cast<uint8_t>(v >> s));
}
void le16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v));
  b.push_back(static_cast<uint8_t>(v >> 8));
}

/// A PNG of signature, IHDR (8-bit RGB, w x h) and IEND only: 45 bytes, no pixel data.
Bytes png_header(uint32_t w, uint32_t h) {
  Bytes b = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  Bytes ihdr;
  be32(ihdr, w);
  be32(ihdr, h);
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // depth 8, colour type 2 (RGB), deflate, no interlace
  png_chunk(b, "IHDR", ihdr);
  png_chunk(b, "IEND", {});
  return b;
}

/// A BMP's file header and BITMAPINFOHEADER (24 bits, uncompressed, w x h): 54 bytes, no pixels.
Bytes bmp_header(uint32_t w, uint32_t h) {
  Bytes b = {'B', 'M'};
  le32(b, 54 + w * 3 * h);  // file size as claimed (wraps; stb does not use it)
  le32(b, 0);               // reserved
  le32(b, 54);              // pixel data offset
  le32(b, 40);              // BITMAPINFOHEADER
  le32(b, w);
  le32(b, h);
  le16(b, 1);                              // planes
  le16(b, 24);                             // bits per pixel
  le32(b, 0);                              // BI_RGB
  for (int i = 0; i < 5; ++i) le32(b, 0);  // image size, resolution, palette
  return b;
}

}  // namespace

TEST_CASE("bad data: a 0-byte training file is an error naming it, whatever the limit",
          "[data][bad_input]") {
  Scratch s("train0");
  write_split_files(s);
  const std::string empty = s.file("data_batch_3.bin");
  write_bytes(empty, {});
  for (int64_t limit : {int64_t{-1}, int64_t{1}, int64_t{5}}) {
    INFO("limit " << limit);
    const std::string msg = message_of([&] { load_cifar10(s.path.string(), true, limit); });
    INFO(msg);
    CHECK(has(msg, "\"" + empty + "\""));
    CHECK(has(msg, "is empty (0 bytes)"));
    CHECK(has(msg, "expected 10,000 records of 3,073 bytes"));
  }
  // read_cifar10_file itself refuses it too.
  const std::string msg = message_of([&] { read_cifar10_file(empty); });
  CHECK(has(msg, empty));
  CHECK(has(msg, "is empty (0 bytes)"));
}

TEST_CASE("bad data: a 0-byte test file is an error naming it", "[data][bad_input]") {
  Scratch s("test0");
  write_split_files(s);
  const std::string empty = s.file("test_batch.bin");
  write_bytes(empty, {});
  const std::string msg = message_of([&] { load_cifar10(s.path.string(), false); });
  INFO(msg);
  CHECK(has(msg, "\"" + empty + "\" is empty (0 bytes); expected 10,000 records of 3,073 bytes"));
  CHECK(has(msg, "scripts/get_cifar10.sh"));
  // The training split of the same folder is fine.
  CHECK(load_cifar10(s.path.string(), true).size() == 10);
}

TEST_CASE("bad data: a file whose size is not a multiple of 3,073 bytes names it and its size",
          "[data][bad_input]") {
  Scratch s("odd");
  write_split_files(s);
  const std::string odd = s.file("test_batch.bin");
  Bytes b = records(1);
  b.resize(b.size() + 5);
  write_bytes(odd, b);
  const std::string msg = message_of([&] { load_cifar10(s.path.string(), false); });
  INFO(msg);
  CHECK(has(msg, "\"" + odd + "\""));
  CHECK(has(msg, "3078 bytes"));
  CHECK(has(msg, "not a multiple of the 3073-byte record"));
  CHECK(has(msg, "expected 3073 or 6146 bytes"));

  // A bad last training file is found even when the limit needs only the first.
  write_bytes(s.file("data_batch_5.bin"), Bytes(100, 0));
  const std::string train_msg = message_of([&] { load_cifar10(s.path.string(), true, 1); });
  INFO(train_msg);
  CHECK(has(train_msg, s.file("data_batch_5.bin")));
  CHECK(has(train_msg, "100 bytes"));
}

TEST_CASE("bad data: a split with no records is an error naming the file or the folder",
          "[data][bad_input]") {
  Scratch s("nosplit");
  SECTION("every training file is empty: the first is named") {
    for (int i = 1; i <= 5; ++i)
      write_bytes(s.file("data_batch_" + std::to_string(i) + ".bin"), {});
    const std::string msg = message_of([&] { load_cifar10(s.path.string(), true); });
    INFO(msg);
    CHECK(has(msg, s.file("data_batch_1.bin")));
    CHECK(has(msg, "is empty (0 bytes)"));
  }
  SECTION("a missing last training file is named even with a small limit") {
    write_split_files(s);
    fs::remove(s.file("data_batch_5.bin"));
    const std::string msg = message_of([&] { load_cifar10(s.path.string(), true, 3); });
    INFO(msg);
    CHECK(has(msg, s.file("data_batch_5.bin")));
    CHECK(has(msg, "No such file or directory"));
  }
  SECTION("limit 0 selects no records: invalid_argument naming the split and the folder") {
    write_split_files(s);
    const std::string msg =
        message_of<std::invalid_argument>([&] { load_cifar10(s.path.string(), false, 0); });
    INFO(msg);
    CHECK(has(msg, "test split"));
    CHECK(has(msg, s.path.string()));
    CHECK(has(msg, "expected a limit >= 1"));
  }
  SECTION("a directory in place of the test file") {
    write_split_files(s);
    fs::remove(s.file("test_batch.bin"));
    fs::create_directory(s.file("test_batch.bin"));
    const std::string msg = message_of([&] { load_cifar10(s.path.string(), false); });
    INFO(msg);
    CHECK(has(msg, s.file("test_batch.bin")));
    CHECK(has(msg, "is a directory"));
  }
}

TEST_CASE("bad data: limit keeps a prefix across files and never reads past what it needs",
          "[data][bad_input]") {
  Scratch s("limit");
  write_split_files(s);
  const Dataset three = load_cifar10(s.path.string(), true, 3);  // 2 from batch 1, 1 from batch 2
  REQUIRE(three.size() == 3);
  CHECK(three.images.size() == 3 * static_cast<size_t>(kImageBytes));
  CHECK(three.labels == std::vector<int32_t>{0, 1, 0});
  CHECK(load_cifar10(s.path.string(), true, 1000).size() == 10);
  CHECK(load_cifar10(s.path.string(), false, -1).size() == 2);
  // A bad label in a file the limit does not reach is not read (its size is still checked).
  Bytes bad = records(2);
  bad[kRecordBytes] = 200;
  write_bytes(s.file("data_batch_2.bin"), bad);
  CHECK(load_cifar10(s.path.string(), true, 2).size() == 2);
  const std::string msg = message_of([&] { load_cifar10(s.path.string(), true, 3); });
  INFO(msg);
  CHECK(has(msg, s.file("data_batch_2.bin")));
  CHECK(has(msg, "record 1 (0-based) has label 200"));
}

TEST_CASE("bad data: an image header claiming 12000 x 12000 pixels is refused before decoding",
          "[data][bad_input]") {
  Scratch s("bigimage");
  SECTION("PNG") {
    const std::string path = s.file("huge.png");
    write_bytes(path, png_header(12000, 12000));
    const std::string msg = message_of([&] { load_image(path); });
    INFO(msg);
    CHECK(has(msg, "\"" + path + "\""));
    CHECK(has(msg, "(PNG) is too large: 12000 x 12000 pixels (144,000,000)"));
    CHECK(has(msg, "67,108,864"));
  }
  SECTION("BMP") {
    const std::string path = s.file("huge.bmp");
    write_bytes(path, bmp_header(12000, 12000));
    const std::string msg = message_of([&] { load_image(path); });
    INFO(msg);
    CHECK(has(msg, "\"" + path + "\""));
    CHECK(has(msg, "(BMP) is too large: 12000 x 12000 pixels"));
  }
  SECTION(
      "just over the cap (8193 x 8192) is refused, the header of 8192 x 8192 passes the check") {
    const std::string over = s.file("over.png");
    write_bytes(over, png_header(8193, 8192));
    CHECK(has(message_of([&] { load_image(over); }), "8193 x 8192 pixels"));
    // At the cap the size check passes and decoding starts: this header has no pixel data, so
    // stb fails, and the message says what the file was read as.
    const std::string at = s.file("at.png");
    write_bytes(at, png_header(8192, 8192));
    const std::string msg = message_of([&] { load_image(at); });
    INFO(msg);
    CHECK(has(msg, "cannot decode image \"" + at + "\" as PNG"));
    CHECK(has(msg, "(stb_image: "));
  }
}

TEST_CASE("bad data: image files that are not images name the file and the expected formats",
          "[data][bad_input]") {
  Scratch s("notimage");
  SECTION("missing") {
    const std::string path = s.file("missing.png");
    const std::string msg = message_of([&] { load_image(path); });
    CHECK(has(msg, "cannot open image \"" + path + "\": No such file or directory"));
  }
  SECTION("empty") {
    const std::string path = s.file("empty.png");
    write_bytes(path, {});
    const std::string msg = message_of([&] { load_image(path); });
    INFO(msg);
    CHECK(has(msg, "\"" + path + "\" is empty (0 bytes)"));
    CHECK(has(msg, "PNG, JPEG"));
  }
  SECTION("text") {
    const std::string path = s.file("notes.jpg");
    const std::string text = "these are not pixels\n";
    write_bytes(path, Bytes(text.begin(), text.end()));
    const std::string msg = message_of([&] { load_image(path); });
    INFO(msg);
    CHECK(has(msg, "\"" + path + "\" is not an image minidl can read: expected PNG, JPEG or BMP"));
    CHECK(has(msg, "(its first bytes match none of their signatures)"));
  }
  SECTION("a directory") {
    const std::string msg = message_of([&] { load_image(s.path.string()); });
    INFO(msg);
    CHECK(has(msg, "\"" + s.path.string() + "\" is a directory"));
  }
  SECTION("a damaged PNG header") {
    Bytes b = png_header(32, 32);
    b[11] = 12;  // IHDR length 12 instead of 13
    const std::string path = s.file("damaged.png");
    write_bytes(path, b);
    const std::string msg = message_of([&] { load_image(path); });
    INFO(msg);
    CHECK(has(msg, "cannot read image \"" + path + "\" as PNG: its header is damaged"));
  }
}

TEST_CASE("bad data: a JPEG Huffman table of more than 256 codes is refused before stb reads it",
          "[data][bad_input]") {
  // SOI, then a DHT segment (length 19: one table) whose 16 code counts sum to 300. Debian's
  // stb_image 2.27 would write past its Huffman arrays (found by tests/fuzz/fuzz_image).
  Bytes b = {0xff, 0xd8, 0xff, 0xc4, 0x00, 0x13, 0x00};
  for (int k = 0; k < 16; ++k) b.push_back(k == 14 ? 45 : k == 15 ? 255 : 0);
  Scratch s("dht");
  const std::string path = s.file("bad_dht.jpg");
  write_bytes(path, b);
  const std::string msg = message_of([&] { load_image(path); });
  INFO(msg);
  CHECK(has(msg, "cannot decode image \"" + path + "\" as JPEG"));
  CHECK(has(msg, "declares 300 codes, at most 256"));
  // The same segment behind fill bytes and junk, as stb would still find it.
  Bytes hidden = {0xff, 0xff, 0xd8, 0x12, 0x34, 0xff, 0xff};
  hidden.insert(hidden.end(), b.begin() + 3, b.end());
  write_bytes(path, hidden);
  CHECK(has(message_of([&] { load_image(path); }), "declares 300 codes"));
}

TEST_CASE("bad data: a PGM is refused by name (minidl reads PNG, JPEG and BMP only)",
          "[data][bad_input]") {
  Scratch s("pgm");
  // 8-bit and 16-bit: stb 2.27 would keep the low byte of each big-endian 16-bit sample (and its
  // gray-to-RGB conversion of such a file reads past its buffer); neither reaches stb now.
  for (const std::string maxval : {"255", "65535"}) {
    const std::string header = "P5\n32 32\n" + maxval + "\n";
    Bytes b(header.begin(), header.end());
    b.resize(b.size() + (maxval == "255" ? 1024 : 2048), 0x7f);
    const std::string path = s.file("gray" + maxval + ".pgm");
    write_bytes(path, b);
    const std::string msg = message_of([&] { load_image(path); });
    INFO(msg);
    CHECK(has(msg, "image \"" + path +
                       "\" is in the PNM (PBM/PGM/PPM) format; minidl reads PNG, "
                       "JPEG or BMP only: convert it first"));
  }
}
