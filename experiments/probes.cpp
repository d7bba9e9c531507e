#include "experiments/probes.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "core/moments.hpp"

namespace minidl::experiments {

namespace {

Tensor grad_copy(const Tensor& p) { return p.has_grad() ? p.grad() : Tensor(); }  // grad(): a copy

/// Sets p's gradient to `g` (dropping it when g is undefined).
void set_grad(const Tensor& p, const Tensor& g) {
  Tensor q = p;
  q.zero_grad();
  if (!g.defined()) return;
  std::memcpy(q.grad_data(), g.data(), sizeof(float) * static_cast<size_t>(g.numel()));
}

/// Puts the model back even when a probe's forward or backward throws.
struct RestoreOnExit {
  Module& model;
  const ModelSnapshot& snapshot;
  ~RestoreOnExit() { snapshot.restore(model); }
};

double distance(const float* a, const float* b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    s += d * d;
  }
  return s;
}

}  // namespace

ModelSnapshot::ModelSnapshot(const Module& model) {
  for (const auto& [name, p] : model.named_parameters()) {
    values_.push_back(p.clone());
    grads_.push_back(grad_copy(p));
  }
  for (const auto& [name, b] : model.named_buffers()) buffers_.push_back(b.clone());
}

void ModelSnapshot::restore(Module& model) const {
  NamedTensors params = model.named_parameters(), buffers = model.named_buffers();
  if (params.size() != values_.size() || buffers.size() != buffers_.size()) {
    throw std::logic_error("ModelSnapshot::restore: the model has other tensors than the snapshot");
  }
  for (size_t i = 0; i < params.size(); ++i) {
    params[i].second.copy_(values_[i]);
    set_grad(params[i].second, grads_[i]);
  }
  for (size_t i = 0; i < buffers.size(); ++i) buffers[i].second.copy_(buffers_[i]);
}

LandscapeProbe probe_landscape(Module& model, double loss, const std::function<Tensor()>& loss_at,
                               const std::vector<double>& etas) {
  LandscapeProbe r;
  r.loss = loss;
  const ModelSnapshot snapshot(model);
  RestoreOnExit restore{model, snapshot};
  NamedTensors params = model.named_parameters();
  std::vector<size_t> moved;  // trainable parameters with a gradient: they move along -g
  double g2 = 0.0;
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].second.requires_grad() || !snapshot.grad(i).defined()) continue;
    moved.push_back(i);
    const float* g = snapshot.grad(i).data();
    for (int64_t k = 0, n = params[i].second.numel(); k < n; ++k)
      g2 += static_cast<double>(g[k]) * g[k];
  }
  r.grad_norm = std::sqrt(g2);
  for (double eta : etas) {
    if (!(eta > 0.0)) throw std::invalid_argument("probe_landscape: every eta must be > 0");
    const float e = static_cast<float>(eta);
    for (size_t i : moved) {  // w - eta * g
      Tensor p = params[i].second;
      const float* w0 = snapshot.value(i).data();
      const float* g = snapshot.grad(i).data();
      float* w = p.mutable_data();
      for (int64_t k = 0, n = p.numel(); k < n; ++k) w[k] = w0[k] - e * g[k];
    }
    for (auto& [name, p] : params) p.zero_grad();
    Tensor l = loss_at();
    l.backward();
    double d2 = 0.0;
    for (size_t i : moved) {
      const Tensor& p = params[i].second;
      if (!p.has_grad()) continue;  // cannot happen for a fixed graph; counted as no change
      d2 += distance(p.grad().data(), snapshot.grad(i).data(), p.numel());
    }
    LandscapePoint pt;
    pt.eta = eta;
    pt.loss = l.item();
    pt.grad_distance = std::sqrt(d2);
    r.points.push_back(pt);
    if (r.grad_norm > 0.0) {
      r.beta_smoothness = std::max(r.beta_smoothness, pt.grad_distance / (eta * r.grad_norm));
    }
  }
  return r;
}

std::vector<CovariateShift> probe_covariate_shift(Module& model, const ModelSnapshot& before,
                                                  const std::function<Tensor()>& loss_at,
                                                  const std::vector<std::string>& weights) {
  const ModelSnapshot after(model);  // W^{t+1}
  RestoreOnExit restore{model, after};
  NamedTensors params = model.named_parameters();
  if (params.size() != before.size()) {
    throw std::logic_error("probe_covariate_shift: the snapshot is of another model");
  }
  std::vector<CovariateShift> out;
  for (const std::string& wname : weights) {
    size_t k = params.size();
    for (size_t i = 0; i < params.size(); ++i) {
      if (params[i].first == wname) k = i;
    }
    if (k == params.size() || !before.grad(k).defined()) {
      throw std::invalid_argument("probe_covariate_shift: \"" + wname +
                                  "\" is not a parameter with a gradient");
    }
    // Parameters before k take W^{t+1}, k and later W^t.
    for (size_t i = 0; i < params.size(); ++i) {
      params[i].second.copy_(i < k ? after.value(i) : before.value(i));
      params[i].second.zero_grad();
    }
    Tensor l = loss_at();
    l.backward();
    const Tensor& p = params[k].second;
    const int64_t n = p.numel();
    const float* g = before.grad(k).data();
    const Tensor g2t = p.has_grad() ? p.grad() : Tensor(p.shape());  // G' (0 if unreached)
    const float* g2 = g2t.data();
    double gg = 0.0, hh = 0.0, gh = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      gg += static_cast<double>(g[i]) * g[i];
      hh += static_cast<double>(g2[i]) * g2[i];
      gh += static_cast<double>(g[i]) * g2[i];
    }
    CovariateShift c;
    c.name = wname;
    c.grad_norm = std::sqrt(gg);
    c.distance = std::sqrt(distance(g, g2, n));
    c.cosine = (gg > 0.0 && hh > 0.0) ? gh / std::sqrt(gg * hh) : 1.0;
    out.push_back(c);
  }
  return out;
}

Distribution distribution_of(std::vector<float> v) {
  Distribution d;
  if (v.empty()) return d;
  std::sort(v.begin(), v.end());
  auto q = [&](double p) {  // numpy.percentile, method "linear"
    const double pos = p / 100.0 * static_cast<double>(v.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (pos - static_cast<double>(lo)) * (static_cast<double>(v[hi]) - v[lo]);
  };
  d.p5 = q(5), d.p25 = q(25), d.p50 = q(50), d.p75 = q(75), d.p95 = q(95);
  Moments m;
  m.add(v.data(), static_cast<int64_t>(v.size()));
  d.mean = m.mean();
  d.std = std::sqrt(m.variance(/*unbiased=*/false));
  return d;
}

}  // namespace minidl::experiments
