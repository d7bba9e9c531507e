#include "layers/batch_norm.hpp"

#include <algorithm>
#include <stdexcept>

#include "core/moments.hpp"
#include "core/ops.hpp"

namespace minidl {

BatchNorm::BatchNorm(const BatchNormOptions& o, bool spatial)
    : num_features(o.num_features_), eps(o.eps_), momentum(o.momentum_), spatial_(spatial) {
  const int64_t c = num_features;
  if (c < 1 || !(eps > 0.0f) || !(momentum >= 0.0f && momentum <= 1.0f)) {
    throw std::invalid_argument(
        "BatchNorm: expected num_features >= 1, eps > 0 and momentum in "
        "[0, 1]");
  }
  if (o.affine_) {
    weight = register_parameter("weight", Tensor::full({c}, 1.0f));
    bias = register_parameter("bias", Tensor({c}));
  }
  running_mean = register_buffer("running_mean", Tensor({c}));
  running_var = register_buffer("running_var", Tensor::full({c}, 1.0f));
}

Tensor BatchNorm::forward(const Tensor& x) { return run(x, false, Tensor()); }
Tensor BatchNorm::forward_relu(const Tensor& x) {
  run_forward_pre_hooks(x);  // a fused entry point: operator() is bypassed
  return run(x, true, Tensor());
}
Tensor BatchNorm::forward_add_relu(const Tensor& x, const Tensor& residual) {
  run_forward_pre_hooks(x);
  return run(x, true, residual);
}

Tensor BatchNorm::run(const Tensor& x, bool relu, const Tensor& residual) {
  const bool rank_ok = spatial_ ? x.dim() == 4 : (x.dim() == 2 || x.dim() == 3);
  if (!rank_ok || x.size(1) != num_features) {
    throw std::invalid_argument(type_name() + "(" + std::to_string(num_features) +
                                "): expected input " +
                                (spatial_ ? "[N, " + std::to_string(num_features) + ", H, W]"
                                          : "[N, " + std::to_string(num_features) + "] or [N, " +
                                                std::to_string(num_features) + ", L]") +
                                ", got " + shape_str(x.shape()));
  }
  ops::BatchNormSync sync;
  const bool many = sync_group && sync_group->size() > 1;
  const bool synced = is_training() && (many || exact_statistics);
  if (synced && exact_statistics && !many) {  // one process: its batch is the global batch
    sync.place = [](int64_t N) { return ops::BatchNormSync::Place{0, N, true}; };
  } else if (synced && exact_statistics) {
    std::shared_ptr<dist::ProcessGroup> g = sync_group;
    sync.place = [g](int64_t N) {
      std::vector<uint64_t> counts(static_cast<size_t>(g->size()));
      const uint64_t mine = static_cast<uint64_t>(N);
      g->allgather(&mine, 1, counts.data());
      ops::BatchNormSync::Place p;
      p.owner = g->rank() == 0;
      for (int r = 0; r < g->size(); ++r) {
        if (r < g->rank()) p.first += static_cast<int64_t>(counts[r]);
        p.total += static_cast<int64_t>(counts[r]);
      }
      return p;
    };
    sync.sum_rows = [g](std::vector<double>& rows) {
      g->allreduce_sum(rows.data(), static_cast<int64_t>(rows.size()));
    };
  } else if (synced) {
    std::shared_ptr<dist::ProcessGroup> g = sync_group;
    sync.merge_statistics = [g](std::vector<double>& stats) { merge_statistics(*g, stats); };
    sync.sum_gradients = [g](std::vector<double>& sums) {
      dist::allreduce_sum_ordered(*g, sums.data(), static_cast<int64_t>(sums.size()));
    };
  }
  const ops::BatchNormSync* s = synced ? &sync : nullptr;
  const ops::BatchRenorm* rn = renorm ? &*renorm : nullptr;
  if (residual.defined()) {
    return ops::batch_norm_add_relu(x, weight, bias, running_mean, running_var, is_training(),
                                    momentum, eps, residual, s, group_size, rn);
  }
  if (relu) {
    return ops::batch_norm_relu(x, weight, bias, running_mean, running_var, is_training(), momentum,
                                eps, s, group_size, rn);
  }
  return ops::batch_norm(x, weight, bias, running_mean, running_var, is_training(), momentum, eps,
                         s, group_size, rn);
}

void merge_statistics(dist::ProcessGroup& group, std::vector<double>& stats) {
  const int P = group.size();
  const int64_t n = static_cast<int64_t>(stats.size());
  std::vector<double> all(static_cast<size_t>(P * n));
  group.allgather(stats.data(), n, all.data());
  for (int64_t c = 0; c + 2 < n; c += 3) {
    // Chan, Golub & LeVeque (1979): merging (na, ma, M2a) with (nb, mb, M2b), in rank order.
    double count = 0.0, mean = 0.0, m2 = 0.0;
    for (int r = 0; r < P; ++r) {
      const double nb = all[r * n + c], mb = all[r * n + c + 1], m2b = all[r * n + c + 2];
      if (nb == 0) continue;
      chan_merge(count, mean, m2, nb, mb, m2b);
    }
    stats[c] = count;
    stats[c + 1] = mean;
    stats[c + 2] = m2;
  }
}

}  // namespace minidl
