// Data-parallel training under MPI (ctest: mpiexec -n 2 and -n 3): what crosses the network per
// step, replicas that stay bit-identical, and a distributed run split by stop_after / resume.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/safetensors.hpp"
#include "dist/process_group.hpp"
#include "layers/batch_norm.hpp"
#include "layers/models/registry.hpp"
#include "train/trainer.hpp"

using namespace minidl;

namespace {

std::string data_dir() {
  const char* d = std::getenv("MINIDL_DATA");
  if (!d || !*d) FAIL("MINIDL_DATA is not set");
  return d;
}

/// A folder that every rank names alike (rank 0 writes into it), unique to this job: ctest runs
/// the 2- and 3-process jobs at the same time.
std::string shared_dir(const std::string& name) {
  auto g = dist::default_group();
  uint64_t job = static_cast<uint64_t>(getpid());  // rank 0's
  g->broadcast(&job, 1, 0);
  const std::string d =
      (std::filesystem::temp_directory_path() / ("minidl_mpi_" + name + "_" + std::to_string(job)))
          .string();
  if (g->rank() == 0) std::filesystem::remove_all(d);
  g->barrier();
  return d;
}

train::TrainOptions small(const std::string& out) {
  train::TrainOptions o;
  o.data = data_dir();
  o.model = "resnet8";
  o.epochs = 1;
  o.batch_size = 64;
  o.lr = 0.05f;
  o.limit_train = 256;  // 4 steps an epoch
  o.limit_test = 200;
  o.threads = 1;
  o.seed = 7;
  o.out = out;
  return o;
}

}  // namespace

TEST_CASE("a BN-only step sends exactly 4 bytes per BN parameter", "[mpi][train]") {
  auto counting = std::make_shared<dist::CountingGroup>(dist::default_group());
  train::TrainOptions o = small(shared_dir("bn_only_bytes"));
  o.train_only = optim::TrainOnly::kBn;
  train::Trainer t(o);
  t.set_process_group(counting);
  const train::RunResult r = t.fit();
  int64_t bn_parameters = 0;
  for (BatchNorm* bn : t.model()->modules_of<BatchNorm>())
    bn_parameters += bn->weight.numel() + bn->bias.numel();
  REQUIRE(r.steps == 4);
  CHECK(bn_parameters == 672);
  CHECK(counting->allreduce_calls == r.steps);  // one flat buffer per step
  CHECK(counting->allreduce_bytes == 4 * bn_parameters * r.steps);
}

TEST_CASE("20 steps with synchronized BatchNorm leave bit-identical replicas", "[mpi][train]") {
  auto g = dist::default_group();
  train::TrainOptions o = small(shared_dir("replicas"));
  o.limit_train = 1280;  // 20 steps
  o.bn_sync = train::BnSync::kGlobal;
  o.reduction = train::GradientReduction::kOrdered;
  train::Trainer t(o);
  t.set_process_group(g);
  REQUIRE(t.fit().steps == 20);
  CHECK_NOTHROW(train::check_replicas(*g, *t.model()));  // fit() checked after each epoch too
  // A replica that drifts is caught, naming the tensor.
  if (g->rank() == g->size() - 1) t.model()->named_parameters()[3].second.mutable_data()[0] += 1;
  CHECK_THROWS_WITH(train::check_replicas(*g, *t.model()),
                    Catch::Contains(t.model()->named_parameters()[3].first));
}

TEST_CASE("a distributed run split by stop_after and resumed equals one run", "[mpi][train]") {
  auto g = dist::default_group();
  train::TrainOptions whole = small(shared_dir("whole"));
  whole.epochs = 2;
  train::Trainer a(whole);
  a.set_process_group(g);
  a.fit();
  train::TrainOptions split = small(shared_dir("split"));
  split.epochs = 2;
  {
    train::Trainer b(split);
    b.set_process_group(g);
    CHECK(b.fit(false, 1).epochs_run == 1);
  }
  train::Trainer c(split);
  c.set_process_group(g);
  CHECK(c.fit(true).epochs_run == 1);
  if (g->rank() == 0) {
    const Checkpoint ka = load_safetensors(whole.out + "/model.safetensors");
    const Checkpoint kc = load_safetensors(split.out + "/model.safetensors");
    REQUIRE(ka.tensors.size() == kc.tensors.size());
    for (size_t i = 0; i < ka.tensors.size(); ++i) {
      INFO(ka.tensors[i].first);
      CHECK(ka.tensors[i].second.vec() == kc.tensors[i].second.vec());
    }
  }
}
