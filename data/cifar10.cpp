// minidl — the CIFAR-10 binary reader (see cifar10.hpp).
#include "data/cifar10.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <system_error>

namespace minidl::data {

namespace fs = std::filesystem;

namespace {

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};

}  // namespace

Dataset read_cifar10_file(const std::string& path) {
  if (fs::is_directory(path)) {
    throw std::runtime_error("cifar10: '" + path + "' is a directory, expected a CIFAR-10 .bin file");
  }
  errno = 0;
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file) {
    const int err = errno;
    throw std::runtime_error("cifar10: cannot open '" + path + "': " +
                             (err ? std::strerror(err) : "unknown error"));
  }
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) {
    throw std::runtime_error("cifar10: cannot get the size of '" + path + "': " + ec.message());
  }
  const uint64_t record = static_cast<uint64_t>(kRecordBytes);
  if (size % record != 0) {
    throw std::runtime_error(
        "cifar10: '" + path + "' has " + std::to_string(size) +
        " bytes, which is not a multiple of the 3073-byte record (1 label byte + 3072 pixel "
        "bytes); expected " +
        std::to_string(size / record * record) + " or " + std::to_string((size / record + 1) * record) +
        " bytes (an official file has 30730000): the file is truncated or not a CIFAR-10 binary file");
  }
  const int64_t n = static_cast<int64_t>(size / record);

  Dataset ds;
  ds.images.resize(static_cast<size_t>(n * kImageBytes));
  ds.labels.resize(static_cast<size_t>(n));

  // Read in chunks of records to keep the temporary buffer small.
  constexpr int64_t kChunkRecords = 1000;
  std::vector<uint8_t> buf(static_cast<size_t>(std::min<int64_t>(n, kChunkRecords) * kRecordBytes));
  for (int64_t first = 0; first < n; first += kChunkRecords) {
    const int64_t count = std::min<int64_t>(kChunkRecords, n - first);
    const size_t bytes = static_cast<size_t>(count * kRecordBytes);
    const size_t got = std::fread(buf.data(), 1, bytes, file.get());
    if (got != bytes) {
      throw std::runtime_error("cifar10: read error in '" + path + "' at record " +
                               std::to_string(first + static_cast<int64_t>(got) / kRecordBytes) +
                               (std::ferror(file.get()) ? std::string(": ") + std::strerror(errno)
                                                        : std::string(": unexpected end of file")));
    }
    for (int64_t r = 0; r < count; ++r) {
      const uint8_t* rec = buf.data() + r * kRecordBytes;
      const int64_t index = first + r;
      if (rec[0] > 9) {
        throw std::runtime_error("cifar10: '" + path + "' record " + std::to_string(index) +
                                 " (0-based) has label " + std::to_string(rec[0]) +
                                 ", expected 0..9: not a CIFAR-10 binary file (CIFAR-100 has "
                                 "another layout)");
      }
      ds.labels[static_cast<size_t>(index)] = rec[0];
      std::memcpy(ds.images.data() + index * kImageBytes, rec + 1, static_cast<size_t>(kImageBytes));
    }
  }
  return ds;
}

Dataset load_cifar10(const std::string& dir, bool train, int64_t limit) {
  if (!fs::is_directory(dir)) {
    throw std::runtime_error(
        "cifar10: data directory '" + dir +
        "' does not exist (or is not a directory). It must hold data_batch_1.bin .. "
        "data_batch_5.bin and test_batch.bin; get them with `scripts/get_cifar10.sh DIR`, which "
        "creates DIR/cifar-10-batches-bin, and pass that folder");
  }
  std::vector<std::string> files;
  if (train) {
    for (int i = 1; i <= 5; ++i) files.push_back("data_batch_" + std::to_string(i) + ".bin");
  } else {
    files.push_back("test_batch.bin");
  }

  Dataset all;
  for (const auto& name : files) {
    if (limit >= 0 && all.size() >= limit) break;
    Dataset part = read_cifar10_file((fs::path(dir) / name).string());
    if (all.size() == 0) {
      all = std::move(part);
      // Reserve for the whole split (files are usually of equal size) to avoid regrowing.
      int64_t expect = all.size() * static_cast<int64_t>(files.size());
      if (limit >= 0) expect = std::min(expect, limit);
      all.images.reserve(static_cast<size_t>(std::max(expect, all.size()) * kImageBytes));
      all.labels.reserve(static_cast<size_t>(std::max(expect, all.size())));
    } else {
      all.images.insert(all.images.end(), part.images.begin(), part.images.end());
      all.labels.insert(all.labels.end(), part.labels.begin(), part.labels.end());
    }
  }
  if (limit >= 0 && all.size() > limit) {
    all.labels.resize(static_cast<size_t>(limit));
    all.images.resize(static_cast<size_t>(limit * kImageBytes));
    all.labels.shrink_to_fit();
    all.images.shrink_to_fit();
  }
  return all;
}

const std::vector<std::string>& cifar10_class_names() {
  static const std::vector<std::string> names = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                 "dog",      "frog",       "horse", "ship", "truck"};
  return names;
}

}  // namespace minidl::data
