// minidl — cross-entropy from logits, forward and backward.
//   p = softmax(z) (max-subtracted), q = (1 - eps) one_hot(label) + eps / K
//   loss = -(1/N) sum_n sum_k q[n,k] log p[n,k]
//   dz = (p - q) / N * dloss
// torch.nn.functional.cross_entropy(reduction="mean", label_smoothing=eps).
#include <algorithm>
#include <cmath>

#include "core/ops.hpp"
#include "core/ops_util.hpp"
#include "core/profiler.hpp"

namespace minidl::ops {

using detail::check;

namespace {

/// Returns the mean loss over the N rows of z [N, K] (labels in [0, K)), and writes
/// p = softmax(z) [N, K] (max-subtracted, in double) for the backward.
double cross_entropy_forward(float* prob, const float* z, const int32_t* labels, int64_t N,
                             int64_t K, float eps) {
  double total = 0.0;
  const double off = eps / static_cast<double>(K);  // q = (1 - eps) one_hot + eps / K
  for (int64_t n = 0; n < N; ++n) {
    const float* zn = z + n * K;
    float mx = zn[0];
    for (int64_t k = 1; k < K; ++k) mx = std::max(mx, zn[k]);
    double sum = 0.0;
    for (int64_t k = 0; k < K; ++k) sum += std::exp(static_cast<double>(zn[k] - mx));
    const double log_sum = std::log(sum);
    double loss_n = 0.0;
    for (int64_t k = 0; k < K; ++k) {
      const double logp = zn[k] - mx - log_sum;
      prob[n * K + k] = static_cast<float>(std::exp(logp));
      const double q = off + (k == labels[n] ? 1.0 - eps : 0.0);
      loss_n -= q * logp;  // loss = -(1/N) sum_n sum_k q log p
    }
    total += loss_n;
  }
  return total / static_cast<double>(N);
}

/// dz [N, K] += (p - q) / N * dloss.
void cross_entropy_backward(float* dz, float dloss, const float* prob, const int32_t* labels,
                            int64_t N, int64_t K, float eps) {
  const float scale = dloss / static_cast<float>(N);
  const double off = eps / static_cast<double>(K);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) {
      const double q = off + (k == labels[n] ? 1.0 - eps : 0.0);
      dz[n * K + k] += scale * static_cast<float>(prob[n * K + k] - q);
    }
  }
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const std::vector<int32_t>& labels,
                     float label_smoothing) {
  profiler::Scope _prof("cross_entropy");
  check(logits.dim() == 2, "cross_entropy", "logits [N, K]", logits);
  const int64_t N = logits.size(0), K = logits.size(1);
  if (static_cast<int64_t>(labels.size()) != N || N == 0) {
    throw std::invalid_argument("cross_entropy: " + std::to_string(labels.size()) +
                                " labels for logits " + shape_str(logits.shape()));
  }
  if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f)) {
    throw std::invalid_argument("cross_entropy: label_smoothing must be in [0, 1], got " +
                                std::to_string(label_smoothing));
  }
  for (int64_t n = 0; n < N; ++n) {
    if (labels[n] < 0 || labels[n] >= K) {
      throw std::invalid_argument("cross_entropy: label " + std::to_string(labels[n]) +
                                  " at index " + std::to_string(n) + " outside [0, " +
                                  std::to_string(K) + ")");
    }
  }
  std::vector<float> prob(N * K);
  const double mean_loss =
      cross_entropy_forward(prob.data(), logits.data(), labels.data(), N, K, label_smoothing);
  Tensor loss = Tensor::scalar(static_cast<float>(mean_loss));
  if (!needs_graph({&logits})) return loss;
  TensorImpl* out = loss.impl();
  attach_node(
      loss, {logits},
      [logits, out, prob = std::move(prob), labels, N, K, label_smoothing]() {
        cross_entropy_backward(logits.grad_data(), out->grad[0], prob.data(), labels.data(), N, K,
                               label_smoothing);
      },
      "cross_entropy");
  return loss;
}

}  // namespace minidl::ops
