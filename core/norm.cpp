// minidl — batch_norm forward and backward, fused per channel.
//
// Shapes in core/ops.hpp's letters: x [N, C, S], S = H * W for [N, C, H, W], L for [N, C, L],
// 1 for [N, C]; M = N * S values per channel.
// Training (Ioffe & Szegedy 2015, Algorithm 1):
//   mean = sum(x) / M,  var = sum((x - mean)^2) / M      (biased, used to normalize)
//   inv_std = 1 / sqrt(var + eps),  x_hat = (x - mean) * inv_std,  y = gamma * x_hat + beta
//   running_mean = (1 - momentum) running_mean + momentum mean
//   running_var  = (1 - momentum) running_var  + momentum var * M / (M - 1)   (unbiased)
// Backward of y = gamma * x_hat + beta with batch statistics:
//   dbeta = sum(dy),  dgamma = sum(dy * x_hat)
//   dx = gamma * inv_std / M * (M * dy - dbeta - x_hat * dgamma)
// Eval: mean/var are the running buffers (constants), so dx = gamma * inv_std * dy.
// Saved for backward (BatchNormSaved): mean and inv_std per channel and the op's mode (training,
// relu); x_hat is recomputed from x, and the ReLU mask from the output y.
// The op template (llm.c): batch_norm_forward and batch_norm_backward are sibling free functions
// on raw arrays, outputs first; the autograd closure only fetches the gradient buffers and calls
// batch_norm_backward.
// The per-row sums are vectorized (omp simd reductions: lane-wise partial sums, then combined),
// float within a row of S values, double across rows. The loops over a channel's rows and the
// forward pass are the active SIMD path's (core/simd/norm.cpp, one copy per instruction set:
// core/simd.hpp); this file chooses what to compute and reduces across channels and processes.
// Fused ReLU (batch_norm_relu): y = max(bn(x), 0) in the same pass; backward uses
// dy' = dy * (y > 0) in place of dy in every formula above.
// Fused residual (batch_norm_add_relu): y = max(bn(x) + r, 0); dr += dy * (y > 0).
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/moments.hpp"
#include "core/ops.hpp"
#include "core/ops_util.hpp"
#include "core/profiler.hpp"
#include "core/simd.hpp"

namespace minidl::ops {

using detail::check;
using detail::GradOut;

namespace {

/// What batch_norm's forward saves for its backward (besides its input x and output y).
/// `training` and `relu` are the op's mode, set by the caller; batch_norm_batch_statistics or
/// batch_norm_running_statistics fills mean and inv_std.
struct BatchNormSaved {
  std::vector<float> mean;     ///< [C]: the batch mean (training) or running_mean (eval)
  std::vector<float> inv_std;  ///< [C]: 1 / sqrt(var + eps), var the batch's biased variance or
                               ///< running_var
  bool training = false;       ///< normalized with the batch's statistics, which then depend on x
  bool relu = false;           ///< y = max(., 0) (batch_norm_relu, batch_norm_add_relu)
  /// Synchronized statistics: the global count of values per channel and the reduction of the
  /// backward's sums (empty: this process's batch alone).
  double global_count = 0.0;
  std::function<void(std::vector<double>&)> sum_gradients;
  /// Partition-independent statistics (BatchNormSync::place set): where this process's images sit
  /// in the global batch, and the sum of per-image rows over the processes.
  /// Batch Renormalization's r and d [C] (constants of the backward); empty: plain BatchNorm.
  std::vector<float> r, d;
  bool exact = false;
  BatchNormSync::Place place;
  std::function<void(std::vector<double>&)> sum_rows;
};

/// The forward's first step in eval mode: saved.mean = running_mean and
/// saved.inv_std = 1 / sqrt(running_var + eps), all [C] (the running buffers only read).
void batch_norm_running_statistics(BatchNormSaved& saved, const float* running_mean,
                                   const float* running_var, int64_t C, float eps) {
  saved.mean.resize(C);
  saved.inv_std.resize(C);
  for (int64_t c = 0; c < C; ++c) {
    saved.mean[c] = running_mean[c];
    saved.inv_std[c] =
        static_cast<float>(1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps));
  }
}

/// Mean and M2 = sum((x - mean)^2) of channel c of x [N, C, S] (N * S > 0), in one pass of
/// sums around a shift (the channel's first value), which keeps the variance accurate when
/// |mean| >> std: float partial sums per row (omp simd), double across rows.
inline simd::ChannelMoments channel_moments(const float* x, int64_t N, int64_t C, int64_t S,
                                            int64_t c) {
  return simd::active().bn_channel_moments(x, N, C, S, c);
}

/// The forward's first step in training: saved.mean, saved.inv_std [C] from the mean and biased
/// variance of x [N, C, S] (M = N * S values per channel), and running_mean, running_var [C]
/// (each may be null) updated with `momentum`, running_var from the unbiased variance.
void batch_norm_batch_statistics(BatchNormSaved& saved, float* running_mean, float* running_var,
                                 const float* x, int64_t N, int64_t C, int64_t S, float momentum,
                                 float eps) {
  const int64_t M = N * S;
  saved.mean.resize(C);
  saved.inv_std.resize(C);
  float* mean = saved.mean.data();
  float* inv_std = saved.inv_std.data();
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    const simd::ChannelMoments m = channel_moments(x, N, C, S, c);
    const double mu = m.mean;
    const double var = m.m2 / static_cast<double>(M);  // var = sum((x - mean)^2) / M
    mean[c] = static_cast<float>(mu);
    inv_std[c] = static_cast<float>(1.0 / std::sqrt(var + eps));  // 1 / sqrt(var + eps)
    // running = (1 - momentum) running + momentum batch, the variance unbiased (M / (M - 1))
    if (running_mean) {
      running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mu);
    }
    if (running_var) {
      const double unbiased = var * static_cast<double>(M) / static_cast<double>(M - 1);
      running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] + momentum * unbiased);
    }
  }
}

/// Channel c of the synchronized and exact statistics, from the global batch's count, mean and
/// M2 = sum((x - mean)^2): saved.mean[c], saved.inv_std[c] from the biased variance M2 / count,
/// and the running buffers (each may be null) updated with `momentum`, running_var from the
/// unbiased M2 / (count - 1).
void global_channel_statistics(BatchNormSaved& saved, float* running_mean, float* running_var,
                               int64_t c, double count, double mu, double m2, float momentum,
                               float eps) {
  const double var = m2 / count;  // biased: normalizes
  saved.mean[c] = static_cast<float>(mu);
  saved.inv_std[c] = static_cast<float>(1.0 / std::sqrt(var + eps));
  if (running_mean) {
    running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mu);
  }
  if (running_var) {
    const double unbiased = m2 / (count - 1.0);
    running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] + momentum * unbiased);
  }
}

/// The forward's first step in synchronized training: this process's (count, mean, M2) [3C] of
/// x [N, C, S] (batch_norm_batch_statistics's shifted one-pass sums), as doubles, merged
/// over the processes by sync.merge_statistics, then saved.mean, saved.inv_std [C] and the
/// running buffers (each may be null) from the global statistics, running_var unbiased with
/// the global count.
void batch_norm_sync_statistics(BatchNormSaved& saved, float* running_mean, float* running_var,
                                const float* x, int64_t N, int64_t C, int64_t S, float momentum,
                                float eps, const BatchNormSync& sync) {
  const int64_t M = N * S;
  std::vector<double> stats(3 * C, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    if (M == 0) continue;  // a process with no images: count 0
    const simd::ChannelMoments m = channel_moments(x, N, C, S, c);  // as batch_statistics
    stats[3 * c] = static_cast<double>(M);
    stats[3 * c + 1] = m.mean;
    stats[3 * c + 2] = m.m2;
  }
  sync.merge_statistics(stats);
  saved.mean.resize(C);
  saved.inv_std.resize(C);
  saved.global_count = stats[0];
  for (int64_t c = 0; c < C; ++c) {
    const double count = stats[3 * c], mu = stats[3 * c + 1], m2 = stats[3 * c + 2];
    if (!(count > 1)) {
      throw std::invalid_argument(
          "batch_norm: expected more than 1 value per channel over all processes when training, "
          "got " +
          std::to_string(static_cast<int64_t>(count)));
    }
    global_channel_statistics(saved, running_mean, running_var, c, count, mu, m2, momentum, eps);
  }
  saved.sum_gradients = sync.sum_gradients;
}

/// Channel c's per-image rows of the exact forward: rows_c [T, 2] at this process's images
/// (first + n) get image n's mean and M2 of its S values of x [N, C, S] (float sums around the
/// image's first value, omp simd; then double): one compiled body for every caller.
inline void exact_channel_moments(double* rows_c, int64_t first, const float* x, int64_t N,
                                  int64_t C, int64_t S, int64_t c) {
  simd::active().bn_image_moments(rows_c, first, x, N, C, S, c);
}

/// The forward's first step with partition-independent statistics (sync.place set): each image's
/// (mean, M2) of each channel of x [N, C, S] in double (float sums around the image's first
/// value, as channel_moments does for a whole channel), placed at this process's rows of a
/// [total, C, 2] buffer, summed over the processes by sync.sum_rows, then merged image by image in
/// global order (Chan et al.: n = na + nb, delta = mb - ma, mean = ma + delta nb / n, M2 = M2a +
/// M2b + delta^2 na nb / n). saved.mean, saved.inv_std and the running buffers (each may be null)
/// as batch_norm_sync_statistics. Every process, whatever the split, does the same double
/// arithmetic on the same rows: the statistics are the same bits.
void batch_norm_exact_statistics(BatchNormSaved& saved, float* running_mean, float* running_var,
                                 const float* x, int64_t N, int64_t C, int64_t S, float momentum,
                                 float eps, const BatchNormSync& sync) {
  const BatchNormSync::Place place = sync.place(N);
  const int64_t T = place.total;
  std::vector<double> rows(static_cast<size_t>(C * T * 2), 0.0);  // [C, T, 2]
  if (S > 0) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; ++c)
      exact_channel_moments(rows.data() + c * T * 2, place.first, x, N, C, S, c);
  }
  if (sync.sum_rows) sync.sum_rows(rows);
  const double count = static_cast<double>(place.total) * static_cast<double>(S);
  if (!(count > 1)) {
    throw std::invalid_argument(
        "batch_norm: expected more than 1 value per channel over all processes when training, "
        "got " +
        std::to_string(static_cast<int64_t>(count)));
  }
  saved.mean.resize(C);
  saved.inv_std.resize(C);
  saved.global_count = count;
  saved.exact = true;
  saved.place = place;
  saved.sum_rows = sync.sum_rows;
  const double s = static_cast<double>(S);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    double n = 0.0, mu = 0.0, m2 = 0.0;
    for (int64_t i = 0; i < T; ++i) {  // Chan's merge, in global image order
      const double* row = rows.data() + (c * T + i) * 2;
      chan_merge(n, mu, m2, s, row[0], row[1]);
    }
    global_channel_statistics(saved, running_mean, running_var, c, count, mu, m2, momentum, eps);
  }
}

/// y [N, C, S] = gamma * (x - mean) * inv_std + beta with saved.mean, saved.inv_std [C] (one of
/// the two functions above), then + residual (may be null) and max(., 0) when saved.relu.
/// x [N, C, S]; gamma, beta [C] may be null (1 and 0); residual [N, C, S] only with saved.relu.
void batch_norm_forward(float* y, const BatchNormSaved& saved, const float* x, const float* gamma,
                        const float* beta, const float* residual, int64_t N, int64_t C, int64_t S) {
  simd::active().bn_forward(y, saved.mean.data(), saved.inv_std.data(), saved.relu, x, gamma, beta,
                            residual, N, C, S);
}

/// Batch Renormalization (Ioffe 2017, Algorithm 1): saved.r and saved.d [C] from the batch's
/// statistics in saved (mu_B = mean, sigma_B = 1 / inv_std) and the running statistics before
/// this batch's update (old_mean, old_var [C]): sigma = sqrt(old_var + eps),
/// r = clip(sigma_B / sigma, 1 / r_max, r_max), d = clip((mu_B - old_mean) / sigma, -d_max, d_max).
void batch_renorm_corrections(BatchNormSaved& saved, const std::vector<float>& old_mean,
                              const std::vector<float>& old_var, const BatchRenorm& renorm,
                              float eps) {
  const size_t C = saved.mean.size();
  saved.r.resize(C);
  saved.d.resize(C);
  const double r_max = renorm.r_max, d_max = renorm.d_max;
  for (size_t c = 0; c < C; ++c) {
    const double sigma = std::sqrt(static_cast<double>(old_var[c]) + eps);
    const double sigma_b = 1.0 / static_cast<double>(saved.inv_std[c]);
    const double r = std::clamp(sigma_b / sigma, 1.0 / r_max, r_max);
    const double d =
        std::clamp((static_cast<double>(saved.mean[c]) - old_mean[c]) / sigma, -d_max, d_max);
    saved.r[c] = static_cast<float>(r);
    saved.d[c] = static_cast<float>(d);
  }
}

/// Training on one slice of images (the batch, or one ghost group): the batch statistics and the
/// running buffers (batch_norm_batch_statistics), Batch Renormalization's r and d when `renorm`
/// is set (from the running buffers as they were before this slice), then the forward into y:
/// with renorm, y = gamma r x_tilde + (beta + gamma d) with x_tilde = (x - mu_B) inv_std, i.e.
/// batch_norm_forward with the affine (gamma r, beta + gamma d). Shapes as batch_norm_forward.
void batch_norm_train_slice(float* y, BatchNormSaved& saved, float* running_mean,
                            float* running_var, const float* x, const float* gamma,
                            const float* beta, const float* residual, int64_t N, int64_t C,
                            int64_t S, float momentum, float eps, const BatchRenorm* renorm) {
  std::vector<float> old_mean, old_var;
  if (renorm) {
    old_mean.assign(running_mean, running_mean + C);
    old_var.assign(running_var, running_var + C);
  }
  batch_norm_batch_statistics(saved, running_mean, running_var, x, N, C, S, momentum, eps);
  if (!renorm) {
    batch_norm_forward(y, saved, x, gamma, beta, residual, N, C, S);
    return;
  }
  batch_renorm_corrections(saved, old_mean, old_var, *renorm, eps);
  std::vector<float> g(C), b(C);
  for (int64_t c = 0; c < C; ++c) {
    const float gc = gamma ? gamma[c] : 1.0f;
    g[c] = gc * saved.r[c];
    b[c] = (beta ? beta[c] : 0.0f) + gc * saved.d[c];
  }
  batch_norm_forward(y, saved, x, g.data(), b.data(), residual, N, C, S);
}

/// The backward's per-channel sums of channel c: sum(dy') and sum(dy' * x_hat), dy' = dy masked
/// by (y > 0) when relu (float within an image's row, double across images), and dr = dy' (= when
/// dr.fresh, else +=) when dr.data is set. x, dy, y, dr [N, C, S]; mu, is: channel c's mean and
/// inv_std.
inline std::pair<double, double> channel_gradient_sums(GradOut dr_out, const float* dy,
                                                       const float* y, const float* x, int64_t N,
                                                       int64_t C, int64_t S, int64_t c, float mu,
                                                       float is, bool relu) {
  return simd::active().bn_channel_gradient_sums(dr_out.data, dr_out.fresh, dy, y, x, N, C, S, c,
                                                 mu, is, relu);
}

/// dx of channel c (= when dx.fresh, else +=): training, dx = k (dy' - a - x_hat b) with
/// k = gamma inv_std, a = sum(dy) / M, b = sum(dy x_hat) / M; eval, dx = k dy' (x not read, so
/// an infinite x cannot turn into 0 * inf = NaN). dy' as in channel_gradient_sums.
inline void channel_dx(GradOut dx_out, const float* dy, const float* y, const float* x, int64_t N,
                       int64_t C, int64_t S, int64_t c, float mu, float is, float k, float a,
                       float b, bool training, bool relu) {
  simd::active().bn_channel_dx(dx_out.data, dx_out.fresh, dy, y, x, N, C, S, c, mu, is, k, a, b,
                               training, relu);
}

/// The gradients of batch_norm_forward from dy [N, C, S], what the forward saved, its output y and
/// its inputs x [N, C, S], gamma [C] (may be null): dx [N, C, S] (= when dx.fresh, else +=),
/// dgamma, dbeta [C] (+=) and dr [N, C, S] (the residual's, = when dr.fresh, else +=); each
/// output may be null. With saved.relu, dy' = dy * (y > 0) replaces dy.
void batch_norm_backward(GradOut dx_out, float* dgamma, float* dbeta, GradOut dr_out,
                         const float* dy, const BatchNormSaved& saved, const float* y,
                         const float* x, const float* gamma, int64_t N, int64_t C, int64_t S) {
  const int64_t M = N * S;
  const bool training = saved.training, relu = saved.relu, renorm = !saved.r.empty();
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    const float mu = saved.mean[c], is = saved.inv_std[c];
    // dbeta = sum(dy), dgamma = sum(dy * x_hat)
    const auto [sum_dy, sum_dy_xhat] =
        channel_gradient_sums(dr_out, dy, y, x, N, C, S, c, mu, is, relu);
    if (dbeta) dbeta[c] += static_cast<float>(sum_dy);
    // Batch Renorm: y = gamma (r x_tilde + d) + beta  =>  dgamma = r sum(dy x_tilde) + d sum(dy)
    if (dgamma) {
      dgamma[c] += renorm ? static_cast<float>(static_cast<double>(saved.r[c]) * sum_dy_xhat +
                                               static_cast<double>(saved.d[c]) * sum_dy)
                          : static_cast<float>(sum_dy_xhat);
    }
    if (!dx_out.data) continue;
    // Training: dx = gamma * inv_std / M * (M * dy - dbeta - x_hat * dgamma).
    // Eval: y = gamma * (x - running_mean) * inv_std + beta  =>  dx = gamma * inv_std * dy.
    // Batch Renorm (r, d constants): dL/dx_tilde = gamma r dy, so gamma becomes gamma r.
    float g = gamma ? gamma[c] : 1.0f;
    if (renorm) g *= saved.r[c];
    const float k = g * is;
    const float a = training ? static_cast<float>(sum_dy / M) : 0.0f;
    const float b = training ? static_cast<float>(sum_dy_xhat / M) : 0.0f;
    channel_dx(dx_out, dy, y, x, N, C, S, c, mu, is, k, a, b, training, relu);
  }
}

/// batch_norm_backward with synchronized statistics (saved.sum_gradients set): the same formulas,
/// with sum(dy) and sum(dy * x_hat) summed over the processes for dx and the global count M;
/// dgamma and dbeta get this process's own sums.
void batch_norm_sync_backward(GradOut dx_out, float* dgamma, float* dbeta, GradOut dr_out,
                              const float* dy, const BatchNormSaved& saved, const float* y,
                              const float* x, const float* gamma, int64_t N, int64_t C, int64_t S) {
  std::vector<double> sums(2 * C, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {  // this process's sums, and dr
    const auto [sum_dy, sum_dy_xhat] = channel_gradient_sums(
        dr_out, dy, y, x, N, C, S, c, saved.mean[c], saved.inv_std[c], saved.relu);
    sums[2 * c] = sum_dy;
    sums[2 * c + 1] = sum_dy_xhat;
    if (dbeta) dbeta[c] += static_cast<float>(sum_dy);
    if (dgamma) dgamma[c] += static_cast<float>(sum_dy_xhat);
  }
  saved.sum_gradients(sums);
  if (!dx_out.data) return;
  const double M = saved.global_count;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {  // dx with the global sums and count
    const float is = saved.inv_std[c];
    const float k = (gamma ? gamma[c] : 1.0f) * is;
    channel_dx(dx_out, dy, y, x, N, C, S, c, saved.mean[c], is, k,
               static_cast<float>(sums[2 * c] / M), static_cast<float>(sums[2 * c + 1] / M),
               /*training=*/true, saved.relu);
  }
}

/// Channel c's per-image rows of the exact backward: rows_c [T, 2] at this process's images
/// (first + n) get image n's (sum dy', sum dy' * x_hat) (float within the image), and dr its dy'
/// when dr.data is set. One compiled body (the SIMD path's) for the one-process and the
/// many-process path, so both add the same way.
inline void exact_channel_rows(double* rows_c, int64_t first, GradOut dr_out, const float* dy,
                               const float* y, const float* x, int64_t N, int64_t C, int64_t S,
                               int64_t c, float mu, float is, bool relu) {
  simd::active().bn_image_gradient_sums(rows_c, first, dr_out.data, dr_out.fresh, dy, y, x, N, C, S,
                                        c, mu, is, relu);
}

/// Channel c's end of the exact backward from its rows_c [T, 2] (every process's images):
/// the sums in global image order (double), dgamma and dbeta (+=) on the owner, and dx
/// (channel_dx with the global count M). noinline for the reason above.
[[gnu::noinline]] void exact_channel_finish(GradOut dx_out, float* dgamma, float* dbeta,
                                            const double* rows_c, int64_t T, double M, bool owner,
                                            const float* dy, const float* y, const float* x,
                                            const float* gamma, int64_t N, int64_t C, int64_t S,
                                            int64_t c, float mu, float is, bool relu) {
  double sum_dy = 0.0, sum_dy_xhat = 0.0;
  for (int64_t i = 0; i < T; ++i) {  // global image order
    sum_dy += rows_c[2 * i];
    sum_dy_xhat += rows_c[2 * i + 1];
  }
  if (owner) {
    if (dbeta) dbeta[c] += static_cast<float>(sum_dy);
    if (dgamma) dgamma[c] += static_cast<float>(sum_dy_xhat);
  }
  if (!dx_out.data) return;
  const float k = (gamma ? gamma[c] : 1.0f) * is;
  channel_dx(dx_out, dy, y, x, N, C, S, c, mu, is, k, static_cast<float>(sum_dy / M),
             static_cast<float>(sum_dy_xhat / M), /*training=*/true, relu);
}

/// batch_norm_backward with partition-independent statistics (saved.exact): each image's
/// (sum dy', sum dy' * x_hat) of each channel (exact_channel_rows), placed at this process's rows
/// of a [C, T, 2] buffer, summed over the processes by saved.sum_rows (empty with one process:
/// then each channel finishes in the same pass, while its values are in cache), added image by
/// image in global order; dx from those sums and the global count; dgamma, dbeta (+=) get the
/// global sums on the owner process only.
void batch_norm_exact_backward(GradOut dx_out, float* dgamma, float* dbeta, GradOut dr_out,
                               const float* dy, const BatchNormSaved& saved, const float* y,
                               const float* x, const float* gamma, int64_t N, int64_t C,
                               int64_t S) {
  const BatchNormSync::Place& place = saved.place;
  const int64_t T = place.total;
  const double M = saved.global_count;
  std::vector<double> rows(static_cast<size_t>(C * T * 2), 0.0);  // [C, T, 2]
  auto rows_of = [&](int64_t c) {
    exact_channel_rows(rows.data() + c * T * 2, place.first, dr_out, dy, y, x, N, C, S, c,
                       saved.mean[c], saved.inv_std[c], saved.relu);
  };
  auto finish = [&](int64_t c) {
    exact_channel_finish(dx_out, dgamma, dbeta, rows.data() + c * T * 2, T, M, place.owner, dy, y,
                         x, gamma, N, C, S, c, saved.mean[c], saved.inv_std[c], saved.relu);
  };
  if (!saved.sum_rows) {  // one process: every row is here
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      rows_of(c);
      finish(c);
    }
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) rows_of(c);
  saved.sum_rows(rows);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) finish(c);
}

/// Ghost batch normalization (Hoffer, Hubara & Soudry 2017), training only: the batch's images
/// in groups of G consecutive images (the last group smaller when G does not divide N), each
/// normalized with its own statistics, the running buffers updated from each group in order.
/// This is exactly batch_norm applied to each slice x[g G : (g + 1) G] in sequence (PyTorch: one
/// BatchNorm2d called on each slice, then torch.cat): the same functions run on each slice.
/// Shapes as batch_norm_op; the caller has checked them.
Tensor ghost_batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                        Tensor running_mean, Tensor running_var, float momentum, float eps,
                        bool relu, const Tensor& residual, int64_t G, const BatchRenorm* renorm) {
  const int64_t N = x.size(0), C = x.size(1), S = x.numel() / (N * C);
  std::vector<BatchNormSaved> groups;
  std::vector<std::pair<int64_t, int64_t>> bounds;  // images [begin, end) of each group
  for (int64_t n0 = 0; n0 < N; n0 += G) bounds.emplace_back(n0, std::min(N, n0 + G));
  if ((bounds.back().second - bounds.back().first) * S <= 1) {
    throw std::invalid_argument(
        "batch_norm: group_size " + std::to_string(G) + " leaves a last group of " +
        std::to_string(bounds.back().second - bounds.back().first) + " image(s) of " +
        std::to_string(S) + " value(s) per channel, input shape " + shape_str(x.shape()) +
        "; a group needs more than 1 value per channel");
  }
  Tensor y = Tensor::empty(x.shape());
  for (const auto& [n0, n1] : bounds) {
    BatchNormSaved saved;
    saved.training = true;
    saved.relu = relu;
    const int64_t off = n0 * C * S;
    batch_norm_train_slice(
        y.mutable_data() + off, saved,
        running_mean.defined() ? running_mean.mutable_data() : nullptr,
        running_var.defined() ? running_var.mutable_data() : nullptr, x.data() + off,
        weight.defined() ? weight.data() : nullptr, bias.defined() ? bias.data() : nullptr,
        residual.defined() ? residual.data() + off : nullptr, n1 - n0, C, S, momentum, eps, renorm);
    groups.push_back(std::move(saved));
  }
  if (!needs_graph({&x, &weight, &bias, &residual})) return y;
  TensorImpl* out = y.impl();
  attach_node(
      y, {x, weight, bias, residual},
      [x, weight, bias, residual, out, groups = std::move(groups), bounds, C, S]() {
        const GradOut dr = detail::grad_for_write_or_null(residual);
        const GradOut dx = detail::grad_for_write_or_null(x);
        profiler::add_bytes(4.0 * static_cast<double>(x.numel()) *
                            ((dx.data ? 7 : 3) + (dr.data ? 1 : 0)));
        float* dgamma = detail::grad_or_null(weight);
        float* dbeta = detail::grad_or_null(bias);
        for (size_t g = 0; g < groups.size(); ++g) {
          const auto [n0, n1] = bounds[g];
          const int64_t off = n0 * C * S;
          batch_norm_backward(GradOut{dx.data ? dx.data + off : nullptr, dx.fresh}, dgamma, dbeta,
                              GradOut{dr.data ? dr.data + off : nullptr, dr.fresh},
                              out->grad.data() + off, groups[g], out->storage->data() + off,
                              x.data() + off, weight.defined() ? weight.data() : nullptr, n1 - n0,
                              C, S);
        }
      },
      residual.defined() ? "batch_norm_add_relu"
      : relu             ? "batch_norm_relu"
                         : "batch_norm");
  return y;
}

/// Checks the shapes, computes the statistics, runs batch_norm_forward and records the node that
/// runs batch_norm_backward.
Tensor batch_norm_op(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                     Tensor running_var, bool training, float momentum, float eps, bool relu,
                     const Tensor& residual, const BatchNormSync* sync, int64_t group_size,
                     const BatchRenorm* renorm) {
  check(x.dim() >= 2, "batch_norm", "input [N, C] or [N, C, H, W]", x);
  simd::active();  // chooses the SIMD path here, outside the parallel loops (it may throw)
  const int64_t N = x.size(0), C = x.size(1), S = (N * C) > 0 ? x.numel() / (N * C) : 0;
  const int64_t M = N * S;
  const std::string c_shape = "[" + std::to_string(C) + "]";
  for (const Tensor* p : {&weight, &bias, static_cast<const Tensor*>(&running_mean),
                          static_cast<const Tensor*>(&running_var)}) {
    if (p->defined()) check(p->dim() == 1 && p->size(0) == C, "batch_norm", c_shape, *p);
  }
  if (!training && !(running_mean.defined() && running_var.defined())) {
    throw std::invalid_argument("batch_norm: eval mode needs running_mean and running_var");
  }
  if (residual.defined())
    check(residual.shape() == x.shape(), "batch_norm_add_relu",
          "residual of x's shape " + shape_str(x.shape()), residual);
  const bool synced = training && sync != nullptr;
  if (!training) renorm = nullptr;  // eval mode: batch_norm's
  if (renorm) {
    if (!(renorm->r_max >= 1.0f) || !(renorm->d_max >= 0.0f)) {
      throw std::invalid_argument("batch_norm: Batch Renorm needs r_max >= 1 and d_max >= 0, got " +
                                  std::to_string(renorm->r_max) + " and " +
                                  std::to_string(renorm->d_max));
    }
    if (synced)
      throw std::invalid_argument("batch_norm: Batch Renorm with synchronized statistics");
    if (!(running_mean.defined() && running_var.defined()))
      throw std::invalid_argument("batch_norm: Batch Renorm needs running_mean and running_var");
  }
  if (training && M <= 1 && !synced) {
    throw std::invalid_argument(
        "batch_norm: expected more than 1 value per channel when training, got input shape " +
        shape_str(x.shape()) + " (use eval mode, or a batch larger than 1)");
  }

  // The profiler's bytes (core/profiler.hpp): the statistics read x, the forward reads x (and r)
  // and writes y; the backward's sums read dy, y and x (and write dr), dx reads them again.
  const double n_bytes = 4.0 * static_cast<double>(x.numel());
  profiler::add_bytes(n_bytes * ((training ? 3 : 2) + (residual.defined() ? 1 : 0)));
  if (training && !synced && group_size > 0 && group_size < N) {
    return ghost_batch_norm(x, weight, bias, running_mean, running_var, momentum, eps, relu,
                            residual, group_size, renorm);
  }
  BatchNormSaved saved;
  saved.training = training;
  saved.relu = relu;
  Tensor y = Tensor::empty(x.shape());
  const float* gamma = weight.defined() ? weight.data() : nullptr;
  const float* beta = bias.defined() ? bias.data() : nullptr;
  const float* r = residual.defined() ? residual.data() : nullptr;
  if (training && !synced) {  // updates the running buffers (mutable_data: their version moves)
    batch_norm_train_slice(y.mutable_data(), saved,
                           running_mean.defined() ? running_mean.mutable_data() : nullptr,
                           running_var.defined() ? running_var.mutable_data() : nullptr, x.data(),
                           gamma, beta, r, N, C, S, momentum, eps, renorm);
  } else if (synced && sync->place) {  // partition-independent: per-image rows in global order
    batch_norm_exact_statistics(saved,
                                running_mean.defined() ? running_mean.mutable_data() : nullptr,
                                running_var.defined() ? running_var.mutable_data() : nullptr,
                                x.data(), N, C, S, momentum, eps, *sync);
  } else if (synced) {  // the statistics of every process's batch (the global count checked there)
    batch_norm_sync_statistics(saved,
                               running_mean.defined() ? running_mean.mutable_data() : nullptr,
                               running_var.defined() ? running_var.mutable_data() : nullptr,
                               x.data(), N, C, S, momentum, eps, *sync);
  } else {  // only reads them (both are defined then, checked above)
    batch_norm_running_statistics(saved, running_mean.data(), running_var.data(), C, eps);
  }
  if (!(training && !synced))
    batch_norm_forward(y.mutable_data(), saved, x.data(), gamma, beta, r, N, C, S);
  if (!needs_graph({&x, &weight, &bias, &residual})) return y;
  TensorImpl* out = y.impl();
  attach_node(
      y, {x, weight, bias, residual},
      [x, weight, bias, residual, out, saved = std::move(saved), N, C, S]() {
        // dr is requested before dx: when x and residual are one tensor, a fresh buffer is
        // assigned by the dr pass and then accumulated into by the dx pass of the same channel.
        const GradOut dr = detail::grad_for_write_or_null(residual);
        const GradOut dx = detail::grad_for_write_or_null(x);
        profiler::add_bytes(4.0 * static_cast<double>(x.numel()) *
                            ((dx.data ? 7 : 3) + (dr.data ? 1 : 0)));
        auto backward = saved.exact           ? batch_norm_exact_backward
                        : saved.sum_gradients ? batch_norm_sync_backward
                                              : batch_norm_backward;
        backward(dx, detail::grad_or_null(weight), detail::grad_or_null(bias), dr, out->grad.data(),
                 saved, out->storage->data(), x.data(), weight.defined() ? weight.data() : nullptr,
                 N, C, S);
      },
      residual.defined() ? "batch_norm_add_relu"
      : relu             ? "batch_norm_relu"
                         : "batch_norm");
  return y;
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                  Tensor running_var, bool training, float momentum, float eps,
                  const BatchNormSync* sync, int64_t group_size, const BatchRenorm* renorm) {
  profiler::Scope _prof("batch_norm");
  return batch_norm_op(x, weight, bias, running_mean, running_var, training, momentum, eps, false,
                       Tensor(), sync, group_size, renorm);
}

Tensor batch_norm_relu(const Tensor& x, const Tensor& weight, const Tensor& bias,
                       Tensor running_mean, Tensor running_var, bool training, float momentum,
                       float eps, const BatchNormSync* sync, int64_t group_size,
                       const BatchRenorm* renorm) {
  profiler::Scope _prof("batch_norm_relu");
  return batch_norm_op(x, weight, bias, running_mean, running_var, training, momentum, eps, true,
                       Tensor(), sync, group_size, renorm);
}

Tensor batch_norm_add_relu(const Tensor& x, const Tensor& weight, const Tensor& bias,
                           Tensor running_mean, Tensor running_var, bool training, float momentum,
                           float eps, const Tensor& residual, const BatchNormSync* sync,
                           int64_t group_size, const BatchRenorm* renorm) {
  profiler::Scope _prof("batch_norm_add_relu");
  if (!residual.defined()) throw std::invalid_argument("batch_norm_add_relu: residual undefined");
  return batch_norm_op(x, weight, bias, running_mean, running_var, training, momentum, eps, true,
                       residual, sync, group_size, renorm);
}

}  // namespace minidl::ops
