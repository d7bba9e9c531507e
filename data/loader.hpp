// minidl — normalization, augmentation, seeded shuffling and mini-batches prepared on a
// background thread.
//
// Conventions: images are NCHW float32, normalized per channel c as
//     x = (byte / 255 - mean[c]) / std[c]
// (torchvision's ToTensor() followed by Normalize(mean, std)).
//
// Reproducibility: the order of the images and every augmentation draw of an epoch are a pure
// function of (seed, epoch, dataset size, options) — see make_epoch_plan — computed on the
// caller's thread before the worker starts; they do not depend on timing, the number of
// threads or the standard library (std::mt19937_64 is fully specified and the integer draws
// are minidl's own, not std::uniform_int_distribution).
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/random.hpp"
#include "core/tensor.hpp"
#include "data/cifar10.hpp"

namespace minidl::data {

/// Per-channel (R, G, B) mean and standard deviation on the 0..1 scale. The defaults are the
/// CIFAR-10 training-set statistics ("cifar10").
struct Normalization {
  std::array<float, 3> mean{0.4914f, 0.4822f, 0.4465f};
  std::array<float, 3> std{0.2470f, 0.2435f, 0.2616f};
};

/// The named normalizations: "cifar10" (the CIFAR-10 training set's statistics, the default)
/// and "imagenet" (mean 0.485, 0.456, 0.406, std 0.229, 0.224, 0.225: torchvision's ImageNet
/// values, which open_lth, the BN-only paper's code, uses for CIFAR-10 too). Throws
/// std::invalid_argument naming `what` (a flag or file) for any other name.
Normalization normalization_named(const std::string& name, const std::string& what = "normalize");
/// The names normalization_named takes: cifar10, imagenet.
const std::vector<std::string>& normalization_names();

/// Normalizes one CHW image: src is 3 x 32 x 32 bytes, dst receives 3 x 32 x 32 floats
/// (byte / 255 - mean[c]) / std[c]. src and dst must not overlap.
void normalize_image(const uint8_t* src, float* dst, const Normalization& norm = {});

/// Images begin .. begin+count-1 of `ds` as a tensor [count, 3, 32, 32] of normalized floats
/// (see normalize_image). Throws std::out_of_range unless 0 <= begin, 0 <= count and
/// begin + count <= ds.size().
Tensor to_tensor(const Dataset& ds, int64_t begin, int64_t count, const Normalization& norm = {});

/// The augmentation schemes of the DataLoader (LoaderOptions::scheme, used when augment is true).
///   kCropFlip: torchvision's RandomCrop(32, padding=4) (zero padding) followed by
///     RandomHorizontalFlip(p=0.5); every draw is new every epoch.
///   kTranslateAlternatingFlip: airbench94's augmentation (Jordan, "94% on CIFAR-10 in 3.29
///     Seconds on a Single GPU", arXiv 2404.00498; legacy/airbench94.py): a mirror left-right that
///     alternates between epochs ("alternating flip": image i is mirrored in epoch e iff
///     base_i XOR (e is odd), base_i ~ Bernoulli(0.5) fixed by the seed), then a random
///     translation by dy, dx in -translate..translate with reflect padding
///     (torch.nn.functional.pad(mode="reflect") followed by a 32x32 crop).
enum class AugmentScheme { kCropFlip, kTranslateAlternatingFlip };

/// The largest padding augment_image takes (and so the largest LoaderOptions::translate).
constexpr int kMaxAugmentPad = 8;

/// The random parameters of one augmented image. P is the source image padded by `pad` pixels
/// on each side ((32 + 2 pad) x (32 + 2 pad)) and (crop_y, crop_x) the top-left corner of the
/// 32x32 crop taken from it; (pad, pad) is the identity crop. Per scheme:
///   kCropFlip (the defaults): pad = 4 and P is zero-padded (RandomCrop(32, padding=4)),
///     crop_y, crop_x in 0..8; flip mirrors left-right AFTER the crop.
///   kTranslateAlternatingFlip: pad = LoaderOptions::translate and P is reflect-padded (the edge
///     pixel is not repeated: P at column -1 is column 1, at column 32 is column 30);
///     crop_y = pad + dy, crop_x = pad + dx for the translation (dy, dx), so crop_y, crop_x in
///     0..2 pad; flip mirrors the image left-right BEFORE it is padded.
/// Aggregate initialization AugmentParams{crop_y, crop_x, flip} is a kCropFlip crop.
struct AugmentParams {
  int crop_y = 4;
  int crop_x = 4;
  bool flip = false;
  AugmentScheme scheme = AugmentScheme::kCropFlip;
  int pad = 4;
};

/// Augments and normalizes one CHW image (pure function). src: 3 x 32 x 32 bytes; dst: 3 x 32 x
/// 32 floats. With norm(b) = (b / 255 - mean[c]) / std[c] and S the source plane:
///   kCropFlip:
///     dst[c][y][x] = norm(P[c][y + crop_y][x' + crop_x]),  x' = flip ? 31 - x : x,
///     P = S zero-padded by `pad`, so a padded pixel becomes (0 - mean[c]) / std[c];
///   kTranslateAlternatingFlip:
///     dst[c][y][x] = norm(M[c][r(y + crop_y - pad)][r(x + crop_x - pad)]),
///     M[c][i][j] = S[c][i][flip ? 31 - j : j],  r(i) = i < 0 ? -i : (i > 31 ? 62 - i : i)
///     (M reflect-padded by `pad`, then cropped at (crop_y, crop_x): airbench94's
///     F.pad(images, (pad,) * 4, "reflect") followed by its crop).
/// Throws std::invalid_argument (naming augment_image and the expected range) if pad is outside
/// 0..kMaxAugmentPad, crop_y or crop_x is outside 0..2 pad, or scheme is not an AugmentScheme.
/// src and dst must not overlap.
void augment_image(const uint8_t* src, float* dst, const AugmentParams& params,
                   const Normalization& norm = {});

/// splitmix64 (core/random.hpp) derives the per-epoch generator seed from (seed, epoch).
using ::minidl::splitmix64;

/// A uniform integer in [0, n) from `gen`, unbiased (rejection sampling), identical on every
/// standard library. Throws std::invalid_argument if n == 0.
uint64_t uniform_below(std::mt19937_64& gen, uint64_t n);

/// Options of a DataLoader.
struct LoaderOptions {
  int64_t batch_size = 128;  ///< images per batch (>= 1)
  bool shuffle = false;      ///< new random order every epoch (else 0, 1, ..., N-1)
  bool augment = false;      ///< augment the images with `scheme`
  bool drop_last = false;    ///< drop a last batch smaller than batch_size
  uint64_t seed = 0;         ///< with the epoch number, determines order and augmentation
  Normalization norm{};
  /// The augmentation when augment is true (see AugmentScheme); the default kCropFlip is
  /// RandomCrop(32, padding=4) + RandomHorizontalFlip(0.5).
  AugmentScheme scheme = AugmentScheme::kCropFlip;
  /// kTranslateAlternatingFlip only: the largest shift in pixels, 0..kMaxAugmentPad (airbench94
  /// uses 2); dy and dx are uniform in -translate..translate. Ignored by kCropFlip.
  int translate = 2;
  /// Data parallelism: every process computes the same plan (the same seed gives the same
  /// images and augmentations whatever the number of processes), and process `rank` of
  /// `world_size` takes the contiguous slice [G r / P, G (r + 1) / P) of each global batch of G
  /// images (P = world_size; uneven when P does not divide G, possibly empty).
  int world_size = 1, rank = 0;
};

/// Everything random about one epoch.
struct EpochPlan {
  /// [N] dataset index of the k-th image of the epoch: a permutation of 0..N-1 (Fisher-Yates)
  /// when shuffling, else the identity.
  std::vector<int64_t> order;
  /// [N] augmentation of the k-th image of the epoch, i.e. of dataset image order[k] (empty
  /// unless opt.augment); every entry has scheme == opt.scheme (see AugmentParams).
  std::vector<AugmentParams> augment;
};

/// Mixed into the seed of the alternating flip's base draws (see make_epoch_plan) to keep them
/// apart from the per-epoch draws (only an epoch numbered 27,422,319,931,320,688 would share
/// their seed): the ASCII bytes of "altflip".
constexpr uint64_t kAlternatingFlipStream = 0x616c74666c6970ULL;

/// The plan of epoch `epoch` for a dataset of n images: a pure function of (n, opt.seed,
/// epoch, opt.shuffle, opt.augment, opt.scheme, opt.translate). The generator is
/// std::mt19937_64 seeded with splitmix64(splitmix64(seed) ^ epoch); it draws the permutation
/// first (Fisher-Yates, from the last position down), then per image k = 0..N-1:
///   kCropFlip: crop_y, crop_x (uniform 0..8) and flip (uniform 0..1), pad = 4;
///   kTranslateAlternatingFlip: crop_y, crop_x (uniform 0..2 translate, i.e. translate + dy,
///     translate + dx), pad = translate, and
///       flip = base[order[k]] XOR (epoch is odd),
///     where base[0..N-1] (uniform 0..1, by dataset index) comes from a second std::mt19937_64
///     seeded with splitmix64(splitmix64(seed) ^ kAlternatingFlipStream): it depends on the
///     seed only, so every image is mirrored in every other epoch (airbench94's alternating
///     flip; an epoch -1 counts as odd).
/// Throws std::invalid_argument if n < 0, or if opt.augment with kTranslateAlternatingFlip and
/// opt.translate is outside 0..kMaxAugmentPad.
EpochPlan make_epoch_plan(int64_t n, const LoaderOptions& opt, int64_t epoch);

/// A mini-batch: images [B, 3, 32, 32] normalized (and augmented if asked), labels [B]. With
/// data parallelism B is this process's slice of a global batch of global_size images.
struct Batch {
  Tensor images;
  std::vector<int32_t> labels;
  int64_t global_size = 0;
};

/// Iterates a Dataset in mini-batches, preparing up to kPrefetch batches ahead on a background
/// thread (a bounded queue). One consumer thread: next() and start_epoch() must be called from
/// the same thread (or externally synchronized).
///
///   LoaderOptions opt;
///   opt.batch_size = 128; opt.shuffle = true; opt.augment = true; opt.seed = 42;
///   DataLoader loader(train, opt);
///   for (int64_t epoch = 0; epoch < E; ++epoch) {
///     loader.start_epoch(epoch);
///     Batch b;
///     while (loader.next(b)) { ... b.images [B,3,32,32], b.labels [B] ... }
///   }
class DataLoader {
 public:
  /// Batches prepared ahead of the consumer at most.
  static constexpr size_t kPrefetch = 3;

  /// Keeps a pointer to `ds`, which must outlive the loader and not change while an epoch
  /// runs. Throws std::invalid_argument if opt.batch_size < 1, rank is outside
  /// 0..world_size-1, or if opt.augment with
  /// kTranslateAlternatingFlip and opt.translate is outside 0..kMaxAugmentPad.
  DataLoader(const Dataset& ds, LoaderOptions opt);
  /// Stops and joins the worker thread (it does not wait for the epoch to finish).
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  /// Starts epoch `epoch` (any integer; usually 0, 1, 2, ...): stops the worker of a running
  /// epoch (its unconsumed batches are discarded), computes make_epoch_plan(N, opt, epoch) and
  /// starts a new worker thread.
  void start_epoch(int64_t epoch);
  /// Moves the next batch of the epoch into `out` (blocking until the worker has it) and
  /// returns true; returns false (leaving `out` alone) once all num_batches() batches have been
  /// returned. Batches come in the plan's order; every batch has batch_size images except a
  /// smaller last one (dropped if drop_last). Throws std::logic_error if start_epoch was never
  /// called, and rethrows an exception raised while preparing a batch.
  bool next(Batch& out);
  /// Batches per epoch: ceil(N / batch_size), or floor(N / batch_size) with drop_last.
  int64_t num_batches() const;
  /// The options given at construction.
  const LoaderOptions& options() const { return opt_; }

 private:
  void stop_worker();
  void worker_main();
  Batch make_batch(int64_t b) const;

  const Dataset* ds_;
  LoaderOptions opt_;
  EpochPlan plan_;
  bool started_ = false;
  int64_t consumed_ = 0;  // batches returned by next() this epoch (consumer thread only)

  std::thread worker_;
  std::mutex mutex_;
  std::condition_variable not_full_;   // worker waits for room in the queue
  std::condition_variable not_empty_;  // consumer waits for a batch
  std::deque<Batch> queue_;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace minidl::data
