// minidl — patch whitening (see patch_whitening.hpp).
#include "layers/patch_whitening.hpp"

#include <Eigen/Eigenvalues>
#include <cmath>
#include <stdexcept>
#include <string>

namespace minidl {

PatchEigen patch_eigen(const Tensor& images, int64_t kernel_size) {
  const int64_t KH = kernel_size, KW = kernel_size;
  if (images.dim() != 4 || images.size(0) < 1 || kernel_size < 1 || KH > images.size(2) ||
      KW > images.size(3)) {
    throw std::invalid_argument(
        "patch_eigen: expected images [N, C, H, W] with N >= 1 and a kernel_size from 1 to H "
        "and W, got " +
        shape_str(images.shape()) + " and kernel_size " + std::to_string(kernel_size));
  }
  const int64_t N = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  const int64_t D = C * KH * KW, HO = H - KH + 1, WO = W - KW + 1;
  const float* x = images.data();
  for (int64_t i = 0; i < images.numel(); ++i) {
    if (!std::isfinite(x[i])) {
      throw std::invalid_argument("patch_eigen: the images hold a non-finite value at index " +
                                  std::to_string(i));
    }
  }
  // Sigma = (1 / P) sum_p v_p v_p^T, accumulated in double.
  Eigen::MatrixXd sigma = Eigen::MatrixXd::Zero(D, D);
  Eigen::VectorXd v(D);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t y = 0; y < HO; ++y) {
      for (int64_t xo = 0; xo < WO; ++xo) {
        int64_t d = 0;
        for (int64_t c = 0; c < C; ++c)
          for (int64_t ky = 0; ky < KH; ++ky)
            for (int64_t kx = 0; kx < KW; ++kx)
              v[d++] = x[((n * C + c) * H + y + ky) * W + xo + kx];
        sigma.selfadjointView<Eigen::Lower>().rankUpdate(v);
      }
    }
  }
  sigma = sigma.selfadjointView<Eigen::Lower>();
  sigma /= static_cast<double>(N * HO * WO);
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(sigma);
  if (solver.info() != Eigen::Success) {
    throw std::runtime_error("patch_eigen: the eigendecomposition did not converge");
  }
  PatchEigen out{Tensor({D}), Tensor({D, D})};
  for (int64_t i = 0; i < D; ++i) {
    const int64_t j = D - 1 - i;  // Eigen sorts ascending; row i holds the i-th largest
    out.eigenvalues.mutable_data()[i] = static_cast<float>(solver.eigenvalues()[j]);
    Eigen::VectorXd u = solver.eigenvectors().col(j);
    Eigen::Index big = 0;
    for (Eigen::Index k = 1; k < u.size(); ++k)
      if (std::fabs(u[k]) > std::fabs(u[big])) big = k;
    if (u[big] < 0) u = -u;
    for (int64_t k = 0; k < D; ++k)
      out.eigenvectors.mutable_data()[i * D + k] = static_cast<float>(u[k]);
  }
  return out;
}

Tensor patch_whitening_weight(const Tensor& images, int64_t kernel_size, double eps,
                              int64_t components) {
  if (!(eps >= 0)) throw std::invalid_argument("patch_whitening_weight: eps must be >= 0");
  const PatchEigen e = patch_eigen(images, kernel_size);
  const int64_t KH = kernel_size, KW = kernel_size, C = images.size(1), D = C * KH * KW;
  if (components != -1 && (components < 1 || components > D)) {
    throw std::invalid_argument("patch_whitening_weight: components must be from 1 to " +
                                std::to_string(D) + " (the values of a patch) or -1, got " +
                                std::to_string(components));
  }
  const int64_t m = components == -1 ? D : components;
  Tensor w({2 * m, C, KH, KW});
  float* d = w.mutable_data();
  for (int64_t i = 0; i < m; ++i) {
    // The eigenvalue may be a tiny negative number from rounding; eps > 0 keeps the root real.
    const double s = 1.0 / std::sqrt(std::max(0.0, double(e.eigenvalues.data()[i])) + eps);
    for (int64_t k = 0; k < D; ++k) {
      const float f = static_cast<float>(e.eigenvectors.data()[i * D + k] * s);
      d[i * D + k] = f;
      d[(m + i) * D + k] = -f;
    }
  }
  return w;
}

}  // namespace minidl
