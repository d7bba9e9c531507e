// dist/ in one process: the local group's collectives, the counting wrapper, the replica hash,
// and synchronized BatchNorm over a group of one, which is BatchNorm bit for bit (the MPI cases
// are tests/mpi/, run by ctest under mpiexec).
#include <catch2/catch.hpp>
#include <vector>

#include "core/random.hpp"
#include "dist/process_group.hpp"
#include "layers/batch_norm.hpp"

using namespace minidl;

TEST_CASE("the local group: collectives of one process", "[dist]") {
  auto g = dist::local_group();
  CHECK(g->rank() == 0);
  CHECK(g->size() == 1);
  CHECK(g->backend() == "local");
  std::vector<float> v = {1.5f, -2.0f};
  g->allreduce_sum(v.data(), 2);
  CHECK(v == std::vector<float>{1.5f, -2.0f});
  std::vector<double> in = {3.0, 4.0}, out(2);
  g->allgather(in.data(), 2, out.data());
  CHECK(out == in);
  CHECK_THROWS_WITH(g->broadcast(v.data(), 2, 1), Catch::Contains("root must be 0"));
  dist::allreduce_sum_ordered(*g, v.data(), 2);
  CHECK(v == std::vector<float>{1.5f, -2.0f});
}

TEST_CASE("CountingGroup counts calls and bytes", "[dist]") {
  dist::CountingGroup c(dist::local_group());
  std::vector<float> v(10);
  std::vector<double> d(3), all(3);
  c.allreduce_sum(v.data(), 10);
  c.allgather(d.data(), 3, all.data());
  c.barrier();
  CHECK(c.calls == 3);
  CHECK(c.bytes == 40 + 24);
  CHECK(c.allreduce_calls == 1);
  CHECK(c.allreduce_bytes == 40);
}

TEST_CASE("hash_bytes is FNV-1a and sees a one-bit change", "[dist]") {
  CHECK(dist::hash_bytes("", 0) == 14695981039346656037ull);  // the offset basis
  CHECK(dist::hash_bytes("a", 1) == 0xaf63dc4c8601ec8cull);   // FNV-1a 64 of "a"
  float x = 1.0f, y = std::nextafter(1.0f, 2.0f);
  CHECK(dist::hash_bytes(&x, 4) != dist::hash_bytes(&y, 4));
}

TEST_CASE("synchronized BatchNorm over one process is BatchNorm2d bit for bit", "[dist][bn]") {
  Generator gen(4);
  Tensor x({6, 3, 4, 5}), r({6, 3, 4, 5}), dy({6, 3, 4, 5});
  for (Tensor* t : {&x, &r, &dy})
    for (float& v : t->mutable_vec()) v = 2.0f + gen.normal();
  for (int mode = 0; mode < 3; ++mode) {
    INFO("mode " << mode);
    BatchNorm2d plain(3), synced(3);
    auto counting = std::make_shared<dist::CountingGroup>(dist::local_group());
    synced.sync_group = counting;
    auto run = [&](BatchNorm2d& bn) {
      Tensor xi = x.clone(), ri = r.clone();
      xi.set_requires_grad(true);
      ri.set_requires_grad(true);
      Tensor y = mode == 0 ? bn(xi) : mode == 1 ? bn.forward_relu(xi) : bn.forward_add_relu(xi, ri);
      y.backward(dy);
      return std::vector<Tensor>{
          y, xi.grad(), bn.weight.grad(), bn.bias.grad(), bn.running_mean, bn.running_var};
    };
    const std::vector<Tensor> a = run(plain), b = run(synced);
    for (size_t i = 0; i < a.size(); ++i) CHECK(a[i].vec() == b[i].vec());
    CHECK(counting->calls == 0);  // a group of one: no collective at all
  }
}
