// The landscape and covariate-shift experiments (experiments/why_bn.hpp).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <stdexcept>

#include "experiments/why_bn.hpp"

#include "core/file_io.hpp"
#include "core/kernels.hpp"
#include "layers/models/registry.hpp"
#include "train/run_dir.hpp"

namespace minidl::experiments {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

/// The model of `variant` derived from the no-BN --model (vgg11[_w<k>]).
std::string variant_model(const std::string& model, const std::string& variant) {
  static const std::regex re("vgg11(_w[0-9]+)?");
  std::smatch m;
  if (!std::regex_match(model, m, re)) {
    throw std::invalid_argument(
        "model must be a VGG without BN (vgg11 or vgg11_w<k>, e.g. "
        "vgg11_w4), got \"" +
        model.substr(0, 40) + "\"");
  }
  const std::string suffix = m[1].matched ? m[1].str() : "";
  if (variant == "standard") return "vgg11" + suffix;
  if (variant == "bn") return "vgg11_bn" + suffix;
  return "vgg11_noisybn" + suffix;
}

/// Checks the flags shared by both experiments; returns the runs' common configuration.
ProbedRunConfig common_config(const WhyBnConfig& c, const std::vector<std::string>& allowed) {
  if (c.epochs < 1) throw std::invalid_argument("epochs must be >= 1");
  if (c.batch_size < 2) throw std::invalid_argument("batch_size must be >= 2 (BatchNorm)");
  if (c.probes < 1) throw std::invalid_argument("probes must be >= 1");
  if (c.lrs.empty()) throw std::invalid_argument("lrs needs at least one learning rate");
  for (float lr : c.lrs) {
    if (!(lr > 0.0f) || !std::isfinite(lr)) throw std::invalid_argument("lrs must be > 0");
  }
  if (c.variants.empty()) throw std::invalid_argument("variants needs at least one variant");
  for (const std::string& v : c.variants) {
    if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
      std::string list;
      for (const std::string& a : allowed) list += (list.empty() ? "" : ", ") + a;
      throw std::invalid_argument("variants: \"" + v.substr(0, 40) + "\" is not one of " + list);
    }
  }
  for (const std::string& v : c.variants) create_model(variant_model(c.model, v));  // names ok
  ProbedRunConfig r;
  r.momentum = c.momentum;
  r.weight_decay = c.weight_decay;
  r.epochs = c.epochs;
  r.batch_size = c.batch_size;
  r.seed = c.seed;
  return r;
}

std::string num(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::ostringstream o;
  o.precision(7);
  o << v;
  return o.str();
}

double median(std::vector<double> v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return std::isnan(x); }), v.end());
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Loaded {
  data::Dataset train, test;
};

Loaded load(const WhyBnConfig& c, const std::string& data_dir) {
  Loaded l;
  l.train = data::load_cifar10(data_dir, true, c.limit_train);
  l.test = data::load_cifar10(data_dir, false, c.limit_test);
  return l;
}

json config_json(const WhyBnConfig& c, const std::string& experiment, int64_t epochs) {
  std::vector<double> lrs;  // as typed: 0.1, not 0.10000000149011612
  for (float lr : c.lrs) lrs.push_back(train::shortest_decimal(lr));
  return json{{"experiment", experiment},
              {"model", c.model},
              {"variants", c.variants},
              {"lr", lrs},
              {"epochs", epochs},
              {"batch_size", c.batch_size},
              {"momentum", train::shortest_decimal(c.momentum)},
              {"weight_decay", train::shortest_decimal(c.weight_decay)},
              {"probes", c.probes},
              {"eta_factors", c.eta_factors},
              {"layer", c.layer},
              {"seed", c.seed},
              {"threads", c.threads},
              {"limit_train", c.limit_train},
              {"limit_test", c.limit_test}};
}

/// "variant,model,lr,epoch,..." rows of every run's epochs.
void add_metrics(std::ostringstream& o, const std::string& variant, const std::string& model,
                 float lr, const ProbedRun& r) {
  for (const auto& e : r.epochs) {
    o << variant << ',' << model << ',' << num(lr) << ',' << e.epoch << ',' << num(e.train_loss)
      << ',' << num(e.train_accuracy) << ',' << num(e.test_loss) << ',' << num(e.test_accuracy)
      << ',' << num(e.seconds) << '\n';
  }
}

const char* kMetricsHeader =
    "variant,model,lr,epoch,train_loss,train_accuracy,test_loss,test_accuracy,seconds\n";

std::string final_accuracy(const ProbedRun& r) {
  if (!r.diverged.empty()) return "diverged";
  if (r.epochs.empty()) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.2f%%", 100.0 * r.epochs.back().test_accuracy);
  return b;
}

/// Reads the data (after the threads are set), creates OUT and writes OUT/config.json.
Loaded start(const WhyBnConfig& c, const char* experiment) {
  set_num_threads(c.threads);
  Loaded d = load(c, c.data);
  fs::create_directories(c.out);
  write_file_atomic(c.out + "/config.json", config_json(c, experiment, c.epochs).dump(2) + "\n");
  return d;
}

/// Writes OUT/<name> for each (name, text) and OUT/results.md.
WhyBnReport finish(const WhyBnConfig& c,
                   const std::vector<std::pair<const char*, std::string>>& files,
                   const std::string& md) {
  for (const auto& [name, text] : files) write_file_atomic(c.out + "/" + name, text);
  write_file_atomic(c.out + "/results.md", md);
  return WhyBnReport{c.out, md};
}

/// Runs one probed run, reporting its epochs and a divergence through the callbacks.
ProbedRun run_one(const WhyBnConfig& c, const ProbedRunConfig& rc, const Loaded& d) {
  ProbedRun r = train_probed(rc, d.train, &d.test, [&](const ProbedRun::Epoch& e) {
    if (c.on_epoch) c.on_epoch(rc.label, e);
  });
  if (!r.diverged.empty() && c.on_diverged) c.on_diverged(rc.label, r.diverged);
  return r;
}

int64_t probe_every(const WhyBnConfig& c, int64_t steps_per_epoch, int64_t epochs) {
  return std::max<int64_t>(1, epochs * steps_per_epoch / c.probes);
}

int64_t steps_per_epoch(const WhyBnConfig& c, const data::Dataset& train) {
  const int64_t n = train.size();
  return n > c.batch_size ? n / c.batch_size : 1;  // drop_last, as train_probed's loader
}

}  // namespace

WhyBnReport run_landscape(WhyBnConfig c) {
  if (c.variants.empty()) c.variants = {"standard", "bn"};
  if (c.epochs < 0) c.epochs = 20;
  if (c.out.empty()) c.out = "runs/landscape";
  ProbedRunConfig base = common_config(c, {"standard", "bn"});
  if (c.eta_factors.empty()) throw std::invalid_argument("eta_factors needs at least one factor");
  for (double f : c.eta_factors) {
    if (!(f > 0.0) || !std::isfinite(f)) throw std::invalid_argument("eta_factors must be > 0");
  }
  const Loaded d = start(c, "landscape");
  base.probe_every = probe_every(c, steps_per_epoch(c, d.train), c.epochs);

  std::ostringstream metrics, points, summary, md;
  metrics << kMetricsHeader;
  points << "variant,model,lr,step,epoch,eta,loss,grad_distance\n";
  summary << "variant,model,lr,step,epoch,loss,grad_norm,loss_min,loss_max,grad_distance_min,"
             "grad_distance_max,beta_smoothness\n";
  md << "# Loss landscape along the gradient (Santurkar et al. 2018, Figure 4)\n\n"
     << "Model " << c.model << ", " << c.epochs << " epochs: plain SGD (momentum "
     << num(c.momentum) << ", weight decay " << num(c.weight_decay) << "), constant lr, batch "
     << c.batch_size << ", seed " << c.seed << ", a probe every " << base.probe_every
     << " steps at eta = lr x {";
  for (size_t i = 0; i < c.eta_factors.size(); ++i) md << (i ? ", " : "") << num(c.eta_factors[i]);
  md << "}. Medians over the probes of the run.\n\n"
     << "| variant | model | lr | final test accuracy | loss band (max - min) | max grad distance "
        "| beta-smoothness | wall time |\n|---|---|---|---|---|---|---|---|\n";
  for (float lr : c.lrs) {
    for (const std::string& v : c.variants) {
      ProbedRunConfig rc = base;
      rc.model = variant_model(c.model, v);
      rc.lr = lr;
      rc.etas.clear();
      for (double f : c.eta_factors) rc.etas.push_back(f * lr);
      rc.label = v + " lr " + num(lr);
      const ProbedRun r = run_one(c, rc, d);
      add_metrics(metrics, v, rc.model, lr, r);
      std::vector<double> bands, dists, betas;
      for (const auto& [step, p] : r.landscape) {
        double lmin = INFINITY, lmax = -INFINITY, dmin = INFINITY, dmax = -INFINITY;
        const int64_t epoch = step / r.steps_per_epoch + 1;
        for (const auto& pt : p.points) {
          points << v << ',' << rc.model << ',' << num(lr) << ',' << step << ',' << epoch << ','
                 << num(pt.eta) << ',' << num(pt.loss) << ',' << num(pt.grad_distance) << '\n';
          lmin = std::min(lmin, pt.loss), lmax = std::max(lmax, pt.loss);
          dmin = std::min(dmin, pt.grad_distance), dmax = std::max(dmax, pt.grad_distance);
        }
        summary << v << ',' << rc.model << ',' << num(lr) << ',' << step << ',' << epoch << ','
                << num(p.loss) << ',' << num(p.grad_norm) << ',' << num(lmin) << ',' << num(lmax)
                << ',' << num(dmin) << ',' << num(dmax) << ',' << num(p.beta_smoothness) << '\n';
        bands.push_back(lmax - lmin);
        dists.push_back(dmax);
        betas.push_back(p.beta_smoothness);
      }
      char row[512];
      std::snprintf(row, sizeof row, "| %s | %s | %s | %s | %.4g | %.4g | %.4g | %.0f s |\n",
                    v.c_str(), rc.model.c_str(), num(lr).c_str(), final_accuracy(r).c_str(),
                    median(bands), median(dists), median(betas), r.seconds);
      md << row;
    }
  }
  md << "\nPlots: `landscape_loss.png` (loss band), `landscape_grad.png` (gradient "
        "predictiveness band), `landscape_beta.png` (effective beta-smoothness); data: "
        "`landscape.csv` (every probe point), `smoothness.csv` (one row per probe), "
        "`metrics.csv` (per epoch).\n";
  return finish(c,
                {{"metrics.csv", metrics.str()},
                 {"landscape.csv", points.str()},
                 {"smoothness.csv", summary.str()}},
                md.str());
}

WhyBnReport run_covariate_shift(WhyBnConfig c) {
  if (c.variants.empty()) c.variants = {"standard", "bn", "noisy-bn"};
  if (c.epochs < 0) c.epochs = 15;
  if (c.out.empty()) c.out = "runs/covariate-shift";
  ProbedRunConfig base = common_config(c, {"standard", "bn", "noisy-bn"});
  for (const std::string& v : c.variants) {  // `layer` must name a block of every variant
    auto m = create_model(variant_model(c.model, v));
    vgg_relu_index(*m, c.layer);
  }
  const Loaded d = start(c, "covariate-shift");
  base.probe_every = probe_every(c, steps_per_epoch(c, d.train), c.epochs);
  base.covariate_shift = true;

  std::ostringstream metrics, acts, shift, md;
  metrics << kMetricsHeader;
  acts << "variant,model,lr,step,epoch,p5,p25,p50,p75,p95,mean,std\n";
  shift << "variant,model,lr,step,epoch,layer,name,grad_norm,distance,cosine\n";
  md << "# Internal covariate shift (Santurkar et al. 2018, Section 2)\n\n"
     << "Model " << c.model << ", " << c.epochs << " epochs: plain SGD (momentum "
     << num(c.momentum) << ", weight decay " << num(c.weight_decay) << "), constant lr, batch "
     << c.batch_size << ", seed " << c.seed << ", a probe every " << base.probe_every
     << " steps; activations: the pre-activations of conv block " << c.layer
     << " (all channels) on the step's batch; covariate shift: every conv and linear weight, "
        "medians over layers and probes.\n\n"
     << "| variant | model | lr | final train accuracy | final test accuracy | ICS l2 distance "
        "| ICS cosine | activation mean: range over training | activation std: range | wall "
        "time |\n|---|---|---|---|---|---|---|---|---|---|\n";
  for (float lr : c.lrs) {
    for (const std::string& v : c.variants) {
      ProbedRunConfig rc = base;
      rc.model = variant_model(c.model, v);
      rc.lr = lr;
      rc.label = v + " lr " + num(lr);
      {
        auto m = create_model(rc.model);
        rc.activation_index = vgg_relu_index(*m, c.layer);
      }
      const ProbedRun r = run_one(c, rc, d);
      add_metrics(metrics, v, rc.model, lr, r);
      double mean_lo = INFINITY, mean_hi = -INFINITY, std_lo = INFINITY, std_hi = -INFINITY;
      for (const auto& [step, a] : r.activations) {
        acts << v << ',' << rc.model << ',' << num(lr) << ',' << step << ','
             << step / r.steps_per_epoch + 1 << ',' << num(a.p5) << ',' << num(a.p25) << ','
             << num(a.p50) << ',' << num(a.p75) << ',' << num(a.p95) << ',' << num(a.mean) << ','
             << num(a.std) << '\n';
        mean_lo = std::min(mean_lo, a.mean), mean_hi = std::max(mean_hi, a.mean);
        std_lo = std::min(std_lo, a.std), std_hi = std::max(std_hi, a.std);
      }
      std::vector<double> dists, cosines;
      for (const auto& [step, layers] : r.shift) {
        for (size_t i = 0; i < layers.size(); ++i) {
          const CovariateShift& s = layers[i];
          shift << v << ',' << rc.model << ',' << num(lr) << ',' << step << ','
                << step / r.steps_per_epoch + 1 << ',' << i + 1 << ',' << s.name << ','
                << num(s.grad_norm) << ',' << num(s.distance) << ',' << num(s.cosine) << '\n';
          dists.push_back(s.distance);
          cosines.push_back(s.cosine);
        }
      }
      char row[640];
      std::snprintf(row, sizeof row,
                    "| %s | %s | %s | %.2f%% | %s | %.4g | %.4g | %.3g to %.3g | %.3g to %.3g | "
                    "%.0f s |\n",
                    v.c_str(), rc.model.c_str(), num(lr).c_str(),
                    r.epochs.empty() ? 0.0 : 100.0 * r.epochs.back().train_accuracy,
                    final_accuracy(r).c_str(), median(dists), median(cosines), mean_lo, mean_hi,
                    std_lo, std_hi, r.seconds);
      md << row;
    }
  }
  md << "\nPlots: `accuracy.png` (train and test accuracy per epoch, Figure 2), "
        "`activations.png` (percentiles 5-25-50-75-95 of the layer's pre-activations over "
        "training), `covariate_shift.png` (l2 distance and cosine per layer over training, "
        "Figure 5); data: `metrics.csv`, `activations.csv`, `covariate_shift.csv`.\n";
  return finish(c,
                {{"metrics.csv", metrics.str()},
                 {"activations.csv", acts.str()},
                 {"covariate_shift.csv", shift.str()}},
                md.str());
}

}  // namespace minidl::experiments
