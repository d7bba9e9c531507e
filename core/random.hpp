// minidl — the seeded random number generator (Generator) and the seed mixer (splitmix64).
// A run's one seed (--seed) determines every random choice, through two kinds of stream:
// - a Generator for the model: weight and BN initialization (Generator(seed) in each model's
//   factory), ActivationNoise's draws (a Generator per layer, seeded with splitmix64 of the
//   seed and the layer's index) and the train-only masks (optim/freeze.cpp);
// - std::mt19937_64 engines of the data loader's own (data/loader.hpp, make_epoch_plan): one
//   per epoch, seeded with splitmix64(splitmix64(seed) ^ epoch), for the shuffle and the
//   augmentation, and one for the alternating flip, drawn through data::uniform_below.
// Both define their draws on the engine's raw 64-bit output (here and in uniform_below), not
// with the standard library's distributions, whose algorithms vary between implementations:
// a seed gives the same numbers with any compiler.
#pragma once

#include <cstdint>
#include <random>

namespace minidl {

/// splitmix64 (Steele et al. 2014): mixes seeds so (seed, stream) pairs give unrelated streams.
uint64_t splitmix64(uint64_t x);

/// A seeded stream of random numbers (mt19937_64).
class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : engine_(splitmix64(seed)) {}
  /// Uniform 64-bit integer.
  uint64_t next() { return engine_(); }
  /// Uniform float in [0, 1) with 24 random bits.
  float uniform() { return static_cast<float>(engine_() >> 40) * (1.0f / 16777216.0f); }
  /// Uniform float in [lo, hi).
  float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }
  /// Uniform integer in [0, n), n >= 1 (rejection sampling, no modulo bias).
  uint64_t randint(uint64_t n);
  /// Standard normal draw (Box-Muller on two 53-bit uniforms).
  float normal();

 private:
  std::mt19937_64 engine_;
};

}  // namespace minidl
