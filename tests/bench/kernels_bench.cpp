// Google Benchmark of minidl's hot kernels at resnet20's shapes (batch 128): conv2d forward and
// backward per stage, batch_norm forward and backward. Reports items (images) per second.
// Build: the `minidl_bench_kernels` target (when libbenchmark-dev is installed); run it on an
// idle machine: build/tests/minidl_bench_kernels --benchmark_min_time=1
#include <benchmark/benchmark.h>

#include "core/kernels.hpp"
#include "core/ops.hpp"
#include "core/random.hpp"

using namespace minidl;

static Tensor randn(const Shape& s, bool grad = false) {
  Generator g(1);
  Tensor t(s, grad);
  for (float& v : t.mutable_vec()) v = g.normal();
  return t;
}

// args: channels, spatial size (resnet20 stages: 16x32, 32x16, 64x8)
static void BM_conv3x3_forward(benchmark::State& st) {
  set_num_threads(2);
  const int64_t C = st.range(0), H = st.range(1), N = 128;
  Tensor x = randn({N, C, H, H}), w = randn({C, C, 3, 3});
  for (auto _ : st) benchmark::DoNotOptimize(ops::conv2d(x, w, Tensor(), 1, 1).data());
  st.SetItemsProcessed(st.iterations() * N);
}
BENCHMARK(BM_conv3x3_forward)->Args({16, 32})->Args({32, 16})->Args({64, 8})->UseRealTime();

static void BM_conv3x3_forward_backward(benchmark::State& st) {
  set_num_threads(2);
  const int64_t C = st.range(0), H = st.range(1), N = 128;
  Tensor x = randn({N, C, H, H}, true), w = randn({C, C, 3, 3}, true);
  Tensor dy = randn({N, C, H, H});
  for (auto _ : st) {
    Tensor y = ops::conv2d(x, w, Tensor(), 1, 1);
    y.backward(dy);
    x.zero_grad();
    w.zero_grad();
  }
  st.SetItemsProcessed(st.iterations() * N);
}
BENCHMARK(BM_conv3x3_forward_backward)
    ->Args({16, 32})
    ->Args({32, 16})
    ->Args({64, 8})
    ->UseRealTime();

// resnet20's im2col convolutions (batch 128), forward and backward: args in_channels,
// out_channels, input size, kernel_size, stride, and whether x needs its gradient (not for the
// stem). The "GFLOP/s" counter counts the direct convolution's FLOPs of every pass that runs, as
// bench --profile does, to set beside the SGEMM peak of scripts/roofline.sh.
static void BM_conv_im2col_forward_backward(benchmark::State& st) {
  set_num_threads(2);
  const int64_t C = st.range(0), O = st.range(1), H = st.range(2), K = st.range(3);
  const int64_t stride = st.range(4), pad = K / 2, N = 128;
  const bool x_grad = st.range(5) != 0;
  Tensor x = randn({N, C, H, H}, x_grad), w = randn({O, C, K, K}, true);
  const int64_t HO = (H + 2 * pad - K) / stride + 1;
  Tensor dy = randn({N, O, HO, HO});
  for (auto _ : st) {
    Tensor y = ops::conv2d(x, w, Tensor(), stride, pad);
    y.backward(dy);
    if (x_grad) x.zero_grad();
    w.zero_grad();
  }
  const double flops = 2.0 * N * O * HO * HO * C * K * K * (x_grad ? 3 : 2);
  st.counters["GFLOP/s"] =
      benchmark::Counter(flops * st.iterations() / 1e9, benchmark::Counter::kIsRate);
  st.SetItemsProcessed(st.iterations() * N);
}
BENCHMARK(BM_conv_im2col_forward_backward)
    ->Args({3, 16, 32, 3, 1, 0})   // the stem
    ->Args({16, 32, 32, 3, 2, 1})  // stage 2's first conv
    ->Args({32, 64, 16, 3, 2, 1})  // stage 3's first conv
    ->Args({16, 32, 32, 1, 2, 1})  // stage 2's shortcut
    ->Args({32, 64, 16, 1, 2, 1})  // stage 3's shortcut
    ->UseRealTime();

// The same five convolutions, forward only (no graph): with the benchmark above, the backward's
// share by difference.
static void BM_conv_im2col_forward(benchmark::State& st) {
  set_num_threads(2);
  const int64_t C = st.range(0), O = st.range(1), H = st.range(2), K = st.range(3);
  const int64_t stride = st.range(4), pad = K / 2, N = 128;
  Tensor x = randn({N, C, H, H}), w = randn({O, C, K, K});
  const int64_t HO = (H + 2 * pad - K) / stride + 1;
  for (auto _ : st) benchmark::DoNotOptimize(ops::conv2d(x, w, Tensor(), stride, pad).data());
  st.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * N * O * HO * HO * C * K * K * st.iterations() / 1e9, benchmark::Counter::kIsRate);
  st.SetItemsProcessed(st.iterations() * N);
}
BENCHMARK(BM_conv_im2col_forward)
    ->Args({3, 16, 32, 3, 1})
    ->Args({16, 32, 32, 3, 2})
    ->Args({32, 64, 16, 3, 2})
    ->Args({16, 32, 32, 1, 2})
    ->Args({32, 64, 16, 1, 2})
    ->UseRealTime();

static void BM_batch_norm_train_forward_backward(benchmark::State& st) {
  set_num_threads(2);
  const int64_t C = st.range(0), H = st.range(1), N = 128;
  Tensor x = randn({N, C, H, H}, true), g = Tensor::full({C}, 1.0f), b({C});
  g.set_requires_grad(true);
  b.set_requires_grad(true);
  Tensor rm({C}), rv = Tensor::full({C}, 1.0f), dy = randn({N, C, H, H});
  for (auto _ : st) {
    Tensor y = ops::batch_norm(x, g, b, rm, rv, true, 0.1f, 1e-5f);
    y.backward(dy);
    x.zero_grad();
  }
  st.SetItemsProcessed(st.iterations() * N);
}
BENCHMARK(BM_batch_norm_train_forward_backward)->Args({16, 32})->Args({64, 8})->UseRealTime();

BENCHMARK_MAIN();
