// minidl — differentiable operations. Each op computes its forward result and, when grad mode is
// on and an input requires a gradient, records a Node whose closure accumulates the inputs'
// gradients. Forward and backward of an op live side by side in one .cpp per family:
//   linalg.cpp (linear), conv.cpp (conv2d), norm.cpp (batch_norm), group_norm.cpp (group_norm,
//   layer_norm), pool.cpp (max_pool2d,
//   global_avg_pool2d), elementwise.cpp (relu, add, add_relu, reshape/flatten), loss.cpp
//   (cross_entropy).
// The op template: in each .cpp an op is a pair of free functions on raw float arrays,
// `<op>_forward(outputs..., inputs..., geometry)` and `<op>_backward(input gradients...,
// output gradient, what forward saved, inputs..., geometry)`, outputs first; the autograd node is
// a short adapter that fetches the gradient buffers and calls the backward.
// Every op throws std::invalid_argument naming the op, what it expected and what it got.
// Each op opens a profiler::Scope named after its node at the top of its forward function
// (core/profiler.hpp), so its `--profile` forward row lines up with the backward row of the same
// name; conv2d's rows name its algorithm ("conv2d (winograd)", "conv2d (im2col)").
//
// Dimension legend, the letters of every shape comment in minidl (after llm.c's):
//   N       batch size (images, or rows of a matrix)
//   C       channels; a convolution's input channels (in_channels)
//   O       a convolution's output channels (out_channels)
//   H, W    input height and width;  HO, WO  output height and width
//   KH, KW  kernel height and width (both kernel_size for a square kernel)
//   S       spatial size of one channel, H * W (S = 1 for [N, C]); M = N * S values per channel
//   R       rows of im2col's matrix, C * KH * KW (the convolution GEMM's inner dimension)
//   DI, DO  a linear layer's input and output features (in_features, out_features)
//   K       classes (logits [N, K])
//   G       group_norm's groups (num_groups), each of C / G channels
//   D       the values one group_norm or layer_norm row normalizes together: C / G * S, or
//           prod(normalized_shape) (layer_norm's input is then [N, D], N its leading dimensions)
// Combined letters are products: NC = N * C, HWO = HO * WO, CHW = C * H * W. Winograd's tile
// letters (m, a, P, T, xi) are defined in core/winograd.hpp. kernels::gemm's M, N, K are BLAS's
// (C [M, N] = A [M, K] B [K, N]), local to that call.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "core/tensor.hpp"

namespace minidl::ops {

/// y = x W^T + b (torch.nn.functional.linear).
/// x [N, DI], weight [DO, DI], bias [DO] or undefined -> y [N, DO].
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

/// 2-d cross-correlation (torch.nn.functional.conv2d, groups = 1, dilation = 1).
/// x [N, C, H, W], weight [O, C, KH, KW], bias [O] or undefined -> y [N, O, HO, WO] with
/// HO = (H + 2 * padding - KH) / stride + 1 (likewise WO).
/// Computed with Winograd F(4x4, 3x3) when conv2d_uses_winograd() (3x3, stride 1, padding 0-2,
/// at least 8 input channels: most of a ResNet's convolutions), else as im2col + sgemm per image;
/// the two differ by float rounding only (about 1e-6 to 1e-5 relative, core/winograd.hpp).
/// The weight-gradient GEMM is skipped when weight.requires_grad() is false, the input-gradient
/// GEMM when x.requires_grad() is false.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
              int64_t padding);

/// Whether conv2d computes a square kernel_size x kernel_size convolution with Winograd
/// F(4x4, 3x3) (core/winograd.hpp) rather than im2col + GEMM: 3x3, stride 1, padding 0 to 2,
/// at least 8 input channels; never in a build with the CMake option MINIDL_WINOGRAD=OFF.
bool conv2d_uses_winograd(int64_t in_channels, int64_t kernel_size, int64_t stride,
                          int64_t padding);

/// Two convolutions of the same input at once: a ResNet block's first convolution and its
/// projection shortcut (He et al. 2016, "Deep Residual Learning", Eq. 2, W_s; torchvision's
/// `downsample`). Returns {conv2d(x, weight, {}, stride, padding), conv2d(x, projection, {},
/// stride, 0)}: x [N, C, H, W], weight [O, C, K, K], projection [OP, C, 1, 1] -> [N, O, HO, WO]
/// and [N, OP, HO, WO] (no biases). Where conv2d_projection_fuses(), the 1 x 1 convolution reads
/// the pixels of the K x K one's center tap, so both are computed from one column matrix per
/// image: one im2col in the forward pass, and in the backward one im2col and one col2im, x's
/// gradient summed before col2im (the rounding of that sum differs from two conv2d calls by
/// float addition order only). Elsewhere it calls conv2d twice. In the fused form the second
/// output's gradient is consumed by the backward pass: after yp.backward(...) with yp as the
/// root, yp's gradient is released like an intermediate's. Throws std::invalid_argument as
/// conv2d does, naming conv2d_with_projection, or for a projection that is not
/// [OP, C, 1, 1].
std::pair<Tensor, Tensor> conv2d_with_projection(const Tensor& x, const Tensor& weight,
                                                 const Tensor& projection, int64_t stride,
                                                 int64_t padding);

/// Whether conv2d_with_projection computes its two convolutions from one column matrix: an odd
/// kernel_size > 1 with padding kernel_size / 2 (the center tap then reads the pixels a 1 x 1
/// convolution of the same stride reads), stride > 1, and not a Winograd geometry.
bool conv2d_projection_fuses(int64_t in_channels, int64_t kernel_size, int64_t stride,
                             int64_t padding);

/// Batch normalization (Ioffe & Szegedy 2015, Algorithm 1; torch.nn.functional.batch_norm).
/// x [N, C], [N, C, L] or [N, C, H, W] (statistics per C over N, over N, L, or over N, H, W; any
/// trailing dimensions are flattened into S values per channel and image).
/// training: normalize with the batch mean and biased variance, and update
///   running = (1 - momentum) * running + momentum * batch_stat   (running_var gets the unbiased
///   batch variance, PyTorch's convention; Keras' momentum equals 1 - this momentum).
/// !training: normalize with running_mean / running_var.
/// y = weight * (x - mean) / sqrt(var + eps) + bias. weight, bias [C] may be undefined
/// (affine = false). running_mean / running_var [C] may be undefined only when training.
/// Throws when training with a single value per channel (as PyTorch does).
///
/// With `sync` (training only; torch.nn.SyncBatchNorm): the mean and variance are those of the
/// union of every process's batch. Forward computes this process's (count, mean, M2) per
/// channel in double, sync->merge_statistics merges them with the others' (Chan et al.'s
/// parallel formula), and the running variance uses the global count (unbiased: M2 / (M - 1)).
/// Backward computes this process's (sum dy, sum dy * x_hat) per channel, sync->sum_gradients
/// sums them over the processes, and dx uses the global sums and count; dweight and dbias stay
/// this process's own sums (the trainer sums parameter gradients over the processes). A
/// process may hold N = 0 images; the global count must exceed 1.
struct BatchNormSync {
  /// stats [3 * C] = this process's (count, mean, M2) of each channel c at 3c, 3c + 1, 3c + 2;
  /// replaced by the merge of every process's, in the same layout.
  std::function<void(std::vector<double>& stats)> merge_statistics;
  /// sums [2 * C] = this process's (sum dy, sum dy * x_hat) of each channel at 2c, 2c + 1;
  /// replaced by their sums over every process.
  std::function<void(std::vector<double>& sums)> sum_gradients;

  /// Partition-independent statistics (set instead of the two above: minidl's `--bn-sync exact`):
  /// every reduction runs over per-image partials in global image order, so the same global batch
  /// gives the same bits on any number of processes, one included. Forward: each image's (mean,
  /// M2) per channel in double (float sums over its S values around its first value), merged
  /// image by image with Chan et al.'s formula; backward: each image's (sum dy, sum dy * x_hat)
  /// per channel, added image by image in double. dweight and dbias hold the global sums on the
  /// process where `place` says `owner` and 0 elsewhere, so that their sum over the processes is
  /// the global sum exactly (x + 0 = x).
  struct Place {
    int64_t first = 0;  ///< this process's first image in the global batch
    int64_t total = 0;  ///< images in the global batch
    bool owner = true;  ///< this process holds dweight and dbias (one process: true)
  };
  /// Where this process's N images sit in the global batch (a collective: every process calls it).
  std::function<Place(int64_t N)> place;
  /// rows [C, total, 2], this process's images filled and the others 0, replaced by the sum over
  /// the processes (exact: each entry is nonzero on one process at most). Empty on one process.
  std::function<void(std::vector<double>& rows)> sum_rows;
};

/// Batch Renormalization (Ioffe 2017, "Batch Renormalization: Towards Reducing Minibatch
/// Dependence in Batch-Normalized Models", Algorithm 1), training only: with the batch's mean
/// mu_B and sigma_B = sqrt(var_B + eps), and the running statistics *before* this batch's update,
/// mu = running_mean and sigma = sqrt(running_var + eps),
///   r = clip(sigma_B / sigma, 1 / r_max, r_max),  d = clip((mu_B - mu) / sigma, -d_max, d_max),
///   x_hat = (x - mu_B) / sigma_B * r + d,  y = weight * x_hat + bias,
/// r and d treated as constants by the backward pass (the paper's stop_gradient). The running
/// statistics are then updated exactly as batch_norm does (running_var from the unbiased batch
/// variance: the paper averages sigma instead; minidl keeps BatchNorm's buffers). Eval mode is
/// batch_norm's. r_max = 1 and d_max = 0 give r = 1, d = 0: batch_norm, bit for bit.
struct BatchRenorm {
  float r_max = 1.0f;  ///< >= 1
  float d_max = 0.0f;  ///< >= 0
};

///
/// With group_size G > 0 (training only, without sync; ghost batch normalization, Hoffer, Hubara
/// & Soudry 2017): the images in groups of G consecutive images, the last one smaller when G does
/// not divide N, each normalized with its own statistics; the running buffers are updated from
/// each group in turn. Exactly batch_norm applied to each slice in sequence (PyTorch: one
/// BatchNorm2d called on x[0:G], x[G:2G], ..., then torch.cat). G >= N is plain batch_norm.
/// With `renorm` (training only; needs both running buffers; not with sync): Batch
/// Renormalization (BatchRenorm above), per ghost group when group_size is set, each group's r
/// and d from the running statistics as the previous group left them.
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                  Tensor running_var, bool training, float momentum, float eps,
                  const BatchNormSync* sync = nullptr, int64_t group_size = 0,
                  const BatchRenorm* renorm = nullptr);

/// relu(batch_norm(...)) fused: one pass writes the output, and the backward applies ReLU's
/// mask inside BN's two passes (the stem and every block's first BN in a ResNet). Same
/// arguments, shapes and errors as batch_norm.
Tensor batch_norm_relu(const Tensor& x, const Tensor& weight, const Tensor& bias,
                       Tensor running_mean, Tensor running_var, bool training, float momentum,
                       float eps, const BatchNormSync* sync = nullptr, int64_t group_size = 0,
                       const BatchRenorm* renorm = nullptr);

/// relu(batch_norm(x, ...) + residual) fused (a ResNet block's tail: bn2, the shortcut sum and
/// the ReLU in one pass). residual has x's shape; its gradient is dy * (y > 0).
Tensor batch_norm_add_relu(const Tensor& x, const Tensor& weight, const Tensor& bias,
                           Tensor running_mean, Tensor running_var, bool training, float momentum,
                           float eps, const Tensor& residual, const BatchNormSync* sync = nullptr,
                           int64_t group_size = 0, const BatchRenorm* renorm = nullptr);

/// Group normalization (Wu & He 2018, eq. 1-2 with eq. 6's per-channel affine and eq. 7's
/// groups; torch.nn.functional.group_norm). x [N, C, *] ([N, C], [N, C, L] or [N, C, H, W]; S
/// values per channel and image) -> y of x's shape. Each image's C channels form num_groups = G
/// groups of C / G consecutive channels; each group of each image is normalized on its own over
/// its D = C / G * S values:
///   y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c]
/// mean and var (biased) those of the group of that image: no batch statistics, no running
/// buffers, the same in training and evaluation; one image gives the same bits alone as inside a
/// batch. weight, bias [C] may each be undefined (1 and 0; affine = false). G = 1 is LayerNorm as
/// Wu & He define it for conv nets (statistics over C, H, W; a weight per channel), G = C is
/// InstanceNorm with an affine. Statistics are summed around a shift in double (accurate when
/// |mean| >> std). Throws std::invalid_argument naming group_norm for an input of fewer than 2
/// dimensions, num_groups < 1 or not dividing C, weight or bias not [C], eps < 0 or not finite.
Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias,
                  float eps = 1e-5f);

/// Layer normalization (Ba, Kiros & Hinton 2016, eq. 3-4; torch.nn.functional.layer_norm). x
/// [*, normalized_shape...] -> y of x's shape: each row of the D = prod(normalized_shape)
/// trailing values is normalized on its own,
///   y = (x - mean) / sqrt(var + eps) * weight + bias
/// mean and var (biased) those of the row; weight, bias of shape normalized_shape (elementwise:
/// one per position of the row), each may be undefined (1 and 0; elementwise_affine = false).
/// No batch statistics: the same in training and evaluation. Statistics are summed around a shift
/// in double. Throws std::invalid_argument naming layer_norm for an empty normalized_shape, an
/// input whose trailing dimensions are not normalized_shape, weight or bias of another shape,
/// eps < 0 or not finite.
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight,
                  const Tensor& bias, float eps = 1e-5f);

/// max over KH x KW windows, KH = KW = kernel_size (torch.nn.functional.max_pool2d, padding
/// counts as -inf). x [N, C, H, W] -> y [N, C, HO, WO], HO = (H + 2 * padding - KH) / stride + 1
/// (likewise WO).
Tensor max_pool2d(const Tensor& x, int64_t kernel_size, int64_t stride, int64_t padding);

/// Mean over H and W: x [N, C, H, W] -> [N, C] (adaptive_avg_pool2d(x, 1) then flatten).
Tensor global_avg_pool2d(const Tensor& x);

/// max(x, 0), any shape.
Tensor relu(const Tensor& x);
/// GELU, exact form (torch.nn.functional.gelu, approximate = "none"; Hendrycks & Gimpel 2016,
/// eq. 1): y = x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2))), any shape.
Tensor gelu(const Tensor& x);
/// s * x for a constant s, any shape (x * s in PyTorch; airbench94's Mul(1/9) on the logits).
/// dx += s * dy.
Tensor scale(const Tensor& x, float s);
/// a + b, equal shapes.
Tensor add(const Tensor& a, const Tensor& b);
/// relu(a + b), equal shapes, fused (the residual block's tail).
Tensor add_relu(const Tensor& a, const Tensor& b);
/// Same values, new shape with the same numel.
Tensor reshape(const Tensor& x, const Shape& shape);
/// [N, ...] -> [N, prod(...)] (torch.flatten(x, 1)).
Tensor flatten(const Tensor& x);

/// Mean cross-entropy of softmax(logits) against labels (torch.nn.functional.cross_entropy,
/// reduction = "mean"). logits [N, K], labels N integers in [0, K) -> scalar [].
/// label_smoothing eps: the target is (1 - eps) * one_hot + eps / K (Szegedy et al. 2016, §7).
Tensor cross_entropy(const Tensor& logits, const std::vector<int32_t>& labels,
                     float label_smoothing = 0.0f);

}  // namespace minidl::ops
