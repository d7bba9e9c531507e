// minidl — the CIFAR-10 binary reader.
//
// File format (cifar-10-binary.tar.gz, Krizhevsky 2009): a file is a sequence of 3,073-byte
// records; each record is 1 label byte (0..9) followed by the 32x32 image as three planes,
// 1,024 red, 1,024 green and 1,024 blue bytes, each plane row-major. The official files are
// data_batch_1.bin .. data_batch_5.bin (10,000 training images each) and test_batch.bin
// (10,000 test images). scripts/get_cifar10.sh downloads them.
//
// The reader keeps the raw bytes (no conversion to float): see loader.hpp for to_tensor and the
// DataLoader, which normalize on the fly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace minidl::data {

/// Image geometry of CIFAR-10: C x H x W = 3 x 32 x 32.
constexpr int64_t kChannels = 3;
constexpr int64_t kImageSide = 32;
constexpr int64_t kPlaneBytes = kImageSide * kImageSide;  // 1,024
constexpr int64_t kImageBytes = kChannels * kPlaneBytes;  // 3,072
constexpr int64_t kRecordBytes = 1 + kImageBytes;         // 3,073 (label + image)
constexpr int64_t kNumClasses = 10;

/// A CIFAR-10 split held as in the file: raw bytes, no normalization.
struct Dataset {
  /// [N, 3, 32, 32] bytes 0..255, CHW per image (image i starts at i * kImageBytes).
  std::vector<uint8_t> images;
  /// [N] class indices 0..9 (see cifar10_class_names()).
  std::vector<int32_t> labels;
  /// N, the number of images.
  int64_t size() const { return static_cast<int64_t>(labels.size()); }
};

/// At most this many records in one file (2^20 = 1,048,576 records, 3.2 GB); an official file
/// has 10,000. A larger file is refused before anything is allocated.
constexpr int64_t kMaxRecordsPerFile = int64_t{1} << 20;

/// Reads one CIFAR-10 binary file (e.g. ".../data_batch_1.bin") completely.
/// Returns N = file size / 3,073 images, 1 <= N <= kMaxRecordsPerFile (the official files have
/// N = 10,000, but any whole number of records is read).
/// Throws std::runtime_error, the message naming the file (in double quotes) and what was
/// expected, when
///  - the path is missing or cannot be opened (names the OS reason), or is a directory or
///    another non-regular file,
///  - the file is empty (0 bytes),
///  - its size is not a multiple of 3,073 bytes (names its size and the nearest valid sizes),
///  - it has more than kMaxRecordsPerFile records,
///  - a record's label is > 9 (names the 0-based record index and the label),
///  - a read fails part way (names the record).
Dataset read_cifar10_file(const std::string& path);

/// Loads a split from `dir`, the folder holding the .bin files (cifar-10-batches-bin).
///  - train == true: data_batch_1.bin .. data_batch_5.bin concatenated in that order (50,000).
///  - train == false: test_batch.bin (10,000).
/// Every file of the split is checked first (it exists, is a regular file, is not empty and its
/// size is a whole number of records), even the ones `limit` does not need, so a half-copied
/// folder is reported at once; then the files are read in order.
/// limit >= 1 keeps only the first `limit` images (files past the ones needed are checked but
/// not read; a limit larger than the split keeps all); limit < 0 keeps all. The result is never
/// empty.
/// Throws std::invalid_argument for limit == 0 (it would select no images), and
/// std::runtime_error when `dir` is not a directory (the message names it and says how to get
/// the data: scripts/get_cifar10.sh) and for any error of read_cifar10_file, naming the file.
Dataset load_cifar10(const std::string& dir, bool train, int64_t limit = -1);

/// The 10 class names in label order: airplane automobile bird cat deer dog frog horse ship
/// truck (batches.meta.txt).
const std::vector<std::string>& cifar10_class_names();

}  // namespace minidl::data
