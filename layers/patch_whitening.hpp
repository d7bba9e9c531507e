// minidl — patch whitening: a conv initialized so that its outputs are decorrelated (whitened)
// patches of the training images, as airbench94's first layer (Keller Jordan, "94% on CIFAR-10
// in 3.29 Seconds on a Single GPU", arXiv 2404.00498, Section 3.2; also Page's "How to train
// your ResNet" series, part 8).
//
// For KH x KW patches (KH = KW = kernel_size) of C-channel images (D = C KH KW values per patch,
// flattened in (c, y, x) order, stride 1, no padding), with the uncentred covariance
//     Sigma = (1 / P) sum_p v_p v_p^T            [D, D], over all P patches
// and its eigendecomposition Sigma = sum_i lambda_i u_i u_i^T, lambda_1 >= ... >= lambda_D,
// filter i of the conv is u_i / sqrt(lambda_i + eps) and filter D + i is its negative:
//     weight [2 D, C, KH, KW],  weight[i] = u_i / sqrt(lambda_i + eps),  weight[D + i] = -weight[i]
// so the first D outputs are the patch's coordinates in the eigenbasis, each scaled to unit
// variance (eps: a floor for tiny eigenvalues), and the next D their negatives (a GELU after it
// then keeps both signs).
// Signs: an eigenvector is defined up to its sign; minidl makes the component of largest
// magnitude of every u_i positive (the first such component on a tie), so the result does not
// depend on the eigensolver. (airbench takes torch.linalg.eigh's signs; with both +u_i and -u_i
// among the filters, the sign only decides which of the two comes first.)
// The eigensolver is Eigen's SelfAdjointEigenSolver (libeigen3-dev), in double precision.
#pragma once

#include "core/tensor.hpp"

namespace minidl {

/// The eigenvalues and eigenvectors of the patch covariance (see above).
struct PatchEigen {
  Tensor eigenvalues;   ///< [D], descending
  Tensor eigenvectors;  ///< [D, D]: row i is u_i (sign convention above), in (c, y, x) order
};

/// The uncentred covariance of every KH x KW patch of `images` [N, C, H, W] (N >= 1,
/// kernel_size <= H, W), eigendecomposed in double precision. Throws std::invalid_argument for a
/// tensor that is not 4-d, kernel_size < 1 or larger than the images, or a non-finite value.
PatchEigen patch_eigen(const Tensor& images, int64_t kernel_size);

/// The whitening conv weight [2 D, C, KH, KW] of `images` [N, C, H, W] (see above): filters
/// eigenvectors_i / sqrt(eigenvalues_i + eps), then their negatives. With `components` = k in
/// 1..D, only the k eigenvectors of largest eigenvalue: weight [2 k, C, KH, KW], rows 0..k-1 the
/// first k rows of the full weight and rows k..2k-1 their negatives (the k leading principal
/// components of the patches, each at unit variance, and their negatives); -1: all D. Throws as
/// patch_eigen, and std::invalid_argument for eps < 0 or components outside 1..D (and not -1).
Tensor patch_whitening_weight(const Tensor& images, int64_t kernel_size, double eps = 5e-4,
                              int64_t components = -1);

}  // namespace minidl
