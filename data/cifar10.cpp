// minidl — the CIFAR-10 binary reader (see cifar10.hpp).
#include "data/cifar10.hpp"
#include "data/messages.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <system_error>

#include <sys/stat.h>

namespace minidl::data {

namespace fs = std::filesystem;

namespace {

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};

using detail::quoted;
using detail::with_commas;

constexpr uint64_t kRecord = static_cast<uint64_t>(kRecordBytes);
constexpr uint64_t kOfficialRecords = 10000;

/// What a file of the split must look like, for the messages.
std::string official_size() {
  return "expected " + with_commas(kOfficialRecords) + " records of " + with_commas(kRecord) +
         " bytes (" + with_commas(kOfficialRecords * kRecord) +
         " bytes) as in the official CIFAR-10 binary files";
}

/// Checks a file's type before it is opened (fopen of a FIFO would block): throws for a
/// missing path, a directory or another non-regular file.
void check_regular_file(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    const std::string reason = ec ? ec.message() : std::strerror(ENOENT);
    throw std::runtime_error("cifar10: cannot open " + quoted(path) + ": " + reason);
  }
  if (fs::is_directory(st)) {
    throw std::runtime_error("cifar10: " + quoted(path) +
                             " is a directory, expected a CIFAR-10 .bin file");
  }
  if (!fs::is_regular_file(st)) {
    throw std::runtime_error("cifar10: " + quoted(path) +
                             " is not a regular file (a device, socket or pipe), expected a "
                             "CIFAR-10 .bin file");
  }
}

/// Validates a file size in bytes and returns the number of records (>= 1).
int64_t records_in(const std::string& path, uint64_t size) {
  if (size == 0) {
    throw std::runtime_error("cifar10: " + quoted(path) + " is empty (0 bytes); " +
                             official_size() +
                             ": the copy is incomplete, get the data again with "
                             "scripts/get_cifar10.sh");
  }
  if (size % kRecord != 0) {
    throw std::runtime_error(
        "cifar10: " + quoted(path) + " has " + std::to_string(size) +
        " bytes, which is not a multiple of the 3073-byte record (1 label byte + 3072 pixel "
        "bytes); expected " +
        std::to_string(size / kRecord * kRecord) + " or " +
        std::to_string((size / kRecord + 1) * kRecord) +
        " bytes (an official file has 30730000): the file is truncated or not a CIFAR-10 "
        "binary file");
  }
  const uint64_t n = size / kRecord;
  if (n > static_cast<uint64_t>(kMaxRecordsPerFile)) {
    throw std::runtime_error("cifar10: " + quoted(path) + " has " + with_commas(n) + " records (" +
                             with_commas(size) + " bytes), more than the " +
                             with_commas(static_cast<uint64_t>(kMaxRecordsPerFile)) +
                             " minidl reads from one file; " + official_size());
  }
  return static_cast<int64_t>(n);
}

/// The size check of one file of a split without opening it: returns its record count.
int64_t check_cifar10_file(const std::string& path) {
  check_regular_file(path);
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  if (ec) {
    throw std::runtime_error("cifar10: cannot get the size of " + quoted(path) + ": " +
                             ec.message());
  }
  return records_in(path, size);
}

}  // namespace

Dataset read_cifar10_file(const std::string& path) {
  check_regular_file(path);
  errno = 0;
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file) {
    const int err = errno;
    throw std::runtime_error("cifar10: cannot open " + quoted(path) + ": " +
                             (err ? std::strerror(err) : "unknown error"));
  }
  // The size of the file actually opened (the path may have been replaced since the check).
  struct stat st {};
  if (::fstat(::fileno(file.get()), &st) != 0) {
    throw std::runtime_error("cifar10: cannot get the size of " + quoted(path) + ": " +
                             std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    throw std::runtime_error("cifar10: " + quoted(path) +
                             " is not a regular file, expected a CIFAR-10 .bin file");
  }
  const int64_t n = records_in(path, static_cast<uint64_t>(st.st_size));

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
      throw std::runtime_error("cifar10: read error in " + quoted(path) + " at record " +
                               std::to_string(first + static_cast<int64_t>(got) / kRecordBytes) +
                               (std::ferror(file.get()) ? std::string(": ") + std::strerror(errno)
                                                        : std::string(": unexpected end of file")));
    }
    for (int64_t r = 0; r < count; ++r) {
      const uint8_t* rec = buf.data() + r * kRecordBytes;
      const int64_t index = first + r;
      if (rec[0] >= kNumClasses) {
        throw std::runtime_error("cifar10: " + quoted(path) + " record " + std::to_string(index) +
                                 " (0-based) has label " + std::to_string(rec[0]) +
                                 ", expected 0..9: not a CIFAR-10 binary file (CIFAR-100 has "
                                 "another layout)");
      }
      ds.labels[static_cast<size_t>(index)] = rec[0];
      std::memcpy(ds.images.data() + index * kImageBytes, rec + 1,
                  static_cast<size_t>(kImageBytes));
    }
  }
  return ds;
}

Dataset load_cifar10(const std::string& dir, bool train, int64_t limit) {
  const std::string split = train ? "training" : "test";
  if (limit == 0) {
    throw std::invalid_argument("cifar10: a limit of 0 images selects nothing from the " + split +
                                " split in " + quoted(dir) +
                                "; expected a limit >= 1, or -1 for the whole split");
  }
  if (!fs::is_directory(dir)) {
    throw std::runtime_error(
        "cifar10: data directory " + quoted(dir) +
        " does not exist (or is not a directory). It must hold data_batch_1.bin .. "
        "data_batch_5.bin and test_batch.bin; get them with `scripts/get_cifar10.sh DIR`, which "
        "creates DIR/cifar-10-batches-bin, and pass that folder");
  }
  std::vector<std::string> files;
  if (train) {
    for (int i = 1; i <= 5; ++i) {
      files.push_back((fs::path(dir) / ("data_batch_" + std::to_string(i) + ".bin")).string());
    }
  } else {
    files.push_back((fs::path(dir) / "test_batch.bin").string());
  }
  // Check the whole split before reading any of it (a missing or empty last file is reported
  // even when `limit` needs only the first).
  int64_t total = 0;
  for (const auto& path : files) total += check_cifar10_file(path);
  const int64_t keep = limit > 0 ? std::min(limit, total) : total;

  Dataset all;
  all.images.reserve(static_cast<size_t>(keep * kImageBytes));
  all.labels.reserve(static_cast<size_t>(keep));
  for (const auto& path : files) {
    if (all.size() >= keep) break;
    Dataset part = read_cifar10_file(path);
    const int64_t take = std::min(part.size(), keep - all.size());
    all.images.insert(all.images.end(), part.images.begin(),
                      part.images.begin() + static_cast<std::ptrdiff_t>(take * kImageBytes));
    all.labels.insert(all.labels.end(), part.labels.begin(),
                      part.labels.begin() + static_cast<std::ptrdiff_t>(take));
  }
  if (all.size() == 0) {  // unreachable after the checks above; kept as the contract's guard
    throw std::runtime_error("cifar10: the " + split + " split in " + quoted(dir) +
                             " has no records; " + official_size());
  }
  return all;
}

const std::vector<std::string>& cifar10_class_names() {
  static const std::vector<std::string> names = {
      "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
  return names;
}

}  // namespace minidl::data
