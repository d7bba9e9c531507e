// minidl — normalization, augmentation, seeded shuffling and the background DataLoader
// (see loader.hpp).
#include "data/loader.hpp"

#include "data/views.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

namespace minidl::data {

namespace {

constexpr int kCropPad = 4;  // kCropFlip: RandomCrop(32, padding=4)
constexpr int kSide = static_cast<int>(kImageSide);

/// byte -> normalized float, per channel: exactly (float(b) / 255 - mean[c]) / std[c].
struct NormTable {
  float v[3][256];
  explicit NormTable(const Normalization& norm) {
    for (int c = 0; c < 3; ++c) {
      for (int b = 0; b < 256; ++b) {
        v[c][b] = (static_cast<float>(b) / 255.0f - norm.mean[c]) / norm.std[c];
      }
    }
  }
};

void normalize_with(const NormTable& t, const uint8_t* src, float* dst) {
  for (int c = 0; c < 3; ++c) {
    const float* lut = t.v[c];
    const uint8_t* s = src + c * kPlaneBytes;
    float* d = dst + c * kPlaneBytes;
    for (int64_t i = 0; i < kPlaneBytes; ++i) d[i] = lut[s[i]];
  }
}

std::string scheme_name(AugmentScheme s) {
  switch (s) {
    case AugmentScheme::kCropFlip:
      return "kCropFlip";
    case AugmentScheme::kTranslateAlternatingFlip:
      return "kTranslateAlternatingFlip";
  }
  return "AugmentScheme(" + std::to_string(static_cast<int>(s)) + ")";
}

void check_params(const AugmentParams& p) {
  if (p.scheme != AugmentScheme::kCropFlip &&
      p.scheme != AugmentScheme::kTranslateAlternatingFlip) {
    throw std::invalid_argument("augment_image: scheme " + scheme_name(p.scheme) +
                                " is not kCropFlip or kTranslateAlternatingFlip");
  }
  if (p.pad < 0 || p.pad > kMaxAugmentPad) {
    throw std::invalid_argument("augment_image: pad " + std::to_string(p.pad) + " outside 0.." +
                                std::to_string(kMaxAugmentPad));
  }
  if (p.crop_y < 0 || p.crop_y > 2 * p.pad || p.crop_x < 0 || p.crop_x > 2 * p.pad) {
    throw std::invalid_argument("augment_image: crop offset (" + std::to_string(p.crop_y) + ", " +
                                std::to_string(p.crop_x) + ") outside 0.." +
                                std::to_string(2 * p.pad) + " (0..2 pad, pad " +
                                std::to_string(p.pad) + ")");
  }
}

void check_translate(const LoaderOptions& opt, const char* who) {
  if (opt.augment && opt.scheme == AugmentScheme::kTranslateAlternatingFlip &&
      (opt.translate < 0 || opt.translate > kMaxAugmentPad)) {
    throw std::invalid_argument(
        std::string(who) + ": translate must be in 0.." + std::to_string(kMaxAugmentPad) +
        " pixels for kTranslateAlternatingFlip, got " + std::to_string(opt.translate));
  }
}

/// The source row of every output row and the source column of every output column of the
/// augmented image (see augment_image), -1 where the output pixel is zero padding. Every
/// output pixel (y, x) is source pixel (rows[y], cols[x]) of the same channel.
void source_indices(const AugmentParams& p, int* rows, int* cols) {
  const int off_y = p.crop_y - p.pad;
  const int off_x = p.crop_x - p.pad;
  if (p.scheme == AugmentScheme::kCropFlip) {  // zero padding, flip after the crop
    for (int y = 0; y < kSide; ++y) {
      const int sy = y + off_y;
      rows[y] = (sy >= 0 && sy < kSide) ? sy : -1;
    }
    for (int x = 0; x < kSide; ++x) {
      const int sx = (p.flip ? kSide - 1 - x : x) + off_x;
      cols[x] = (sx >= 0 && sx < kSide) ? sx : -1;
    }
  } else {  // kTranslateAlternatingFlip: flip before the reflect padding
    for (int y = 0; y < kSide; ++y) rows[y] = static_cast<int>(reflect_index(y + off_y, kSide));
    for (int x = 0; x < kSide; ++x) {
      const int mx =
          static_cast<int>(reflect_index(x + off_x, kSide));  // column of the mirrored image
      cols[x] = p.flip ? kSide - 1 - mx : mx;
    }
  }
}

void augment_with(const NormTable& t, const uint8_t* src, float* dst, const AugmentParams& p) {
  int rows[kSide], cols[kSide];
  source_indices(p, rows, cols);
  for (int c = 0; c < 3; ++c) {
    const float* lut = t.v[c];
    const float zero = lut[0];
    const uint8_t* plane = src + c * kPlaneBytes;
    float* out = dst + c * kPlaneBytes;
    for (int y = 0; y < kSide; ++y) {
      float* row = out + y * kSide;
      if (rows[y] < 0) {
        std::fill(row, row + kSide, zero);
        continue;
      }
      const uint8_t* srow = plane + rows[y] * kSide;
      for (int x = 0; x < kSide; ++x) row[x] = cols[x] >= 0 ? lut[srow[cols[x]]] : zero;
    }
  }
}

}  // namespace

const std::vector<std::string>& normalization_names() {
  static const std::vector<std::string> names = {"cifar10", "imagenet"};
  return names;
}

Normalization normalization_named(const std::string& name, const std::string& what) {
  if (name == "cifar10") return Normalization{};
  if (name == "imagenet") return Normalization{{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
  throw std::invalid_argument(what + ": normalization must be cifar10 or imagenet, got \"" + name +
                              "\"");
}

void normalize_image(const uint8_t* src, float* dst, const Normalization& norm) {
  normalize_with(NormTable(norm), src, dst);
}

Tensor to_tensor(const Dataset& ds, int64_t begin, int64_t count, const Normalization& norm) {
  if (begin < 0 || count < 0 || begin > ds.size() || count > ds.size() - begin) {
    throw std::out_of_range("to_tensor: images [" + std::to_string(begin) + ", " +
                            std::to_string(begin) + " + " + std::to_string(count) +
                            ") out of range for a dataset of " + std::to_string(ds.size()) +
                            " images");
  }
  Tensor out(Shape{count, kChannels, kImageSide, kImageSide});
  const NormTable table(norm);
  float* dst = out.mutable_data();
  for (int64_t i = 0; i < count; ++i) {
    normalize_with(table, ds.images.data() + (begin + i) * kImageBytes, dst + i * kImageBytes);
  }
  return out;
}

void augment_image(const uint8_t* src, float* dst, const AugmentParams& params,
                   const Normalization& norm) {
  check_params(params);
  augment_with(NormTable(norm), src, dst, params);
}

uint64_t uniform_below(std::mt19937_64& gen, uint64_t n) {
  if (n == 0) throw std::invalid_argument("uniform_below: n must be >= 1");
  // Reject the lowest (2^64 mod n) values so that the rest split evenly into n classes.
  const uint64_t threshold = (0 - n) % n;  // == 2^64 mod n
  for (;;) {
    const uint64_t r = gen();
    if (r >= threshold) return r % n;
  }
}

EpochPlan make_epoch_plan(int64_t n, const LoaderOptions& opt, int64_t epoch) {
  if (n < 0) throw std::invalid_argument("make_epoch_plan: n = " + std::to_string(n) + " < 0");
  check_translate(opt, "make_epoch_plan");
  std::mt19937_64 gen(splitmix64(splitmix64(opt.seed) ^ static_cast<uint64_t>(epoch)));
  EpochPlan plan;
  plan.order.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) plan.order[static_cast<size_t>(i)] = i;
  if (opt.shuffle) {
    for (int64_t i = n - 1; i > 0; --i) {
      const auto j = static_cast<int64_t>(uniform_below(gen, static_cast<uint64_t>(i) + 1));
      std::swap(plan.order[static_cast<size_t>(i)], plan.order[static_cast<size_t>(j)]);
    }
  }
  if (opt.augment && opt.scheme == AugmentScheme::kCropFlip) {
    plan.augment.resize(static_cast<size_t>(n));
    for (auto& a : plan.augment) {
      a.crop_y = static_cast<int>(uniform_below(gen, 2 * kCropPad + 1));
      a.crop_x = static_cast<int>(uniform_below(gen, 2 * kCropPad + 1));
      a.flip = uniform_below(gen, 2) == 1;
      a.scheme = AugmentScheme::kCropFlip;
      a.pad = kCropPad;
    }
  } else if (opt.augment) {  // kTranslateAlternatingFlip
    std::mt19937_64 flip_gen(splitmix64(splitmix64(opt.seed) ^ kAlternatingFlipStream));
    std::vector<uint8_t> base(static_cast<size_t>(n));
    for (auto& b : base) b = static_cast<uint8_t>(uniform_below(flip_gen, 2));
    const bool odd = (epoch & 1) != 0;
    const auto side = static_cast<uint64_t>(2 * opt.translate + 1);
    plan.augment.resize(static_cast<size_t>(n));
    for (size_t k = 0; k < plan.augment.size(); ++k) {
      auto& a = plan.augment[k];
      a.crop_y = static_cast<int>(uniform_below(gen, side));
      a.crop_x = static_cast<int>(uniform_below(gen, side));
      a.flip = (base[static_cast<size_t>(plan.order[k])] != 0) != odd;
      a.scheme = AugmentScheme::kTranslateAlternatingFlip;
      a.pad = opt.translate;
    }
  }
  return plan;
}

DataLoader::DataLoader(const Dataset& ds, LoaderOptions opt) : ds_(&ds), opt_(std::move(opt)) {
  if (opt_.world_size < 1 || opt_.rank < 0 || opt_.rank >= opt_.world_size) {
    throw std::invalid_argument("DataLoader: rank " + std::to_string(opt_.rank) +
                                " is not in a world of " + std::to_string(opt_.world_size));
  }
  if (opt_.batch_size < 1) {
    throw std::invalid_argument("DataLoader: batch_size must be >= 1, got " +
                                std::to_string(opt_.batch_size));
  }
  check_translate(opt_, "DataLoader");
}

DataLoader::~DataLoader() { stop_worker(); }

int64_t DataLoader::num_batches() const {
  const int64_t n = ds_->size();
  const int64_t b = opt_.batch_size;
  return opt_.drop_last ? n / b : (n + b - 1) / b;
}

void DataLoader::stop_worker() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  not_full_.notify_all();
  not_empty_.notify_all();
  if (worker_.joinable()) worker_.join();
  std::lock_guard<std::mutex> lock(mutex_);
  queue_.clear();
  error_ = nullptr;
  stop_ = false;
}

void DataLoader::start_epoch(int64_t epoch) {
  stop_worker();
  started_ = false;
  plan_ = make_epoch_plan(ds_->size(), opt_, epoch);
  consumed_ = 0;
  started_ = true;
  if (num_batches() > 0) worker_ = std::thread(&DataLoader::worker_main, this);
}

Batch DataLoader::make_batch(int64_t b) const {
  const int64_t n = ds_->size();
  const int64_t global_begin = b * opt_.batch_size;
  const int64_t global_count = std::min(opt_.batch_size, n - global_begin);
  // This rank's contiguous slice of the global batch (all of it with one process).
  const int64_t lo = global_count * opt_.rank / opt_.world_size;
  const int64_t hi = global_count * (opt_.rank + 1) / opt_.world_size;
  const int64_t begin = global_begin + lo, count = hi - lo;
  Batch batch;
  batch.global_size = global_count;
  // Every value is written below, so no zero fill: Tensor(shape) would fill through
  // kernels::fill, an OpenMP loop that would start a second thread team from this thread.
  batch.images = Tensor::empty(Shape{count, kChannels, kImageSide, kImageSide});
  batch.labels.resize(static_cast<size_t>(count));
  const NormTable table(opt_.norm);
  float* dst = batch.images.mutable_data();
  for (int64_t k = 0; k < count; ++k) {
    const auto pos = static_cast<size_t>(begin + k);
    const int64_t index = plan_.order[pos];
    const uint8_t* src = ds_->images.data() + index * kImageBytes;
    if (opt_.augment) {
      augment_with(table, src, dst + k * kImageBytes, plan_.augment[pos]);
    } else {
      normalize_with(table, src, dst + k * kImageBytes);
    }
    batch.labels[static_cast<size_t>(k)] = ds_->labels[static_cast<size_t>(index)];
  }
  return batch;
}

void DataLoader::worker_main() {
  const int64_t nb = num_batches();
  for (int64_t b = 0; b < nb; ++b) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stop_) return;
    }
    Batch batch;
    try {
      batch = make_batch(b);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = std::current_exception();
      not_empty_.notify_all();
      return;
    }
    std::unique_lock<std::mutex> lock(mutex_);
    not_full_.wait(lock, [this] { return stop_ || queue_.size() < kPrefetch; });
    if (stop_) return;
    queue_.push_back(std::move(batch));
    lock.unlock();
    not_empty_.notify_one();
  }
}

bool DataLoader::next(Batch& out) {
  if (!started_) throw std::logic_error("DataLoader::next: call start_epoch(epoch) first");
  if (consumed_ >= num_batches()) return false;
  std::unique_lock<std::mutex> lock(mutex_);
  not_empty_.wait(lock, [this] { return !queue_.empty() || error_ != nullptr; });
  if (queue_.empty()) {
    std::exception_ptr err = error_;
    lock.unlock();
    std::rethrow_exception(err);
  }
  out = std::move(queue_.front());
  queue_.pop_front();
  ++consumed_;
  lock.unlock();
  not_full_.notify_one();
  return true;
}

}  // namespace minidl::data
