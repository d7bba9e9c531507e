#include "dist/process_group.hpp"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace minidl::dist {

std::string ProcessGroup::host() const {
  char name[256] = {0};
  if (gethostname(name, sizeof name - 1) != 0) return "?";
  return name;
}

namespace {

/// The size-1 group: a sum over one process is the process's own values.
class LocalGroup : public ProcessGroup {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduce_sum(float*, int64_t) override {}
  void allreduce_sum(double*, int64_t) override {}
  void allgather(const double* in, int64_t n, double* out) override {
    if (n > 0) std::memmove(out, in, sizeof(double) * static_cast<size_t>(n));
  }
  void allgather(const uint64_t* in, int64_t n, uint64_t* out) override {
    if (n > 0) std::memmove(out, in, sizeof(uint64_t) * static_cast<size_t>(n));
  }
  void broadcast(float*, int64_t, int root) override { check_root(root); }
  void broadcast(uint64_t*, int64_t, int root) override { check_root(root); }
  void barrier() override {}
  std::string backend() const override { return "local"; }

 private:
  static void check_root(int root) {
    if (root != 0) throw std::invalid_argument("broadcast: root must be 0 in a group of 1");
  }
};

template <class T>
void ordered_sum(ProcessGroup& g, T* data, int64_t n) {
  const int p = g.size();
  if (p == 1 || n == 0) return;
  std::vector<double> in(data, data + n), all(static_cast<size_t>(p * n));
  g.allgather(in.data(), n, all.data());
  for (int64_t i = 0; i < n; ++i) {
    T s = static_cast<T>(all[i]);  // rank 0's value, exactly (float -> double -> float)
    for (int r = 1; r < p; ++r) s += static_cast<T>(all[r * n + i]);
    data[i] = s;
  }
}

}  // namespace

std::shared_ptr<ProcessGroup> local_group() { return std::make_shared<LocalGroup>(); }

bool launched_by_mpi() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMI_SIZE") != nullptr;
}

std::shared_ptr<ProcessGroup> default_group() {
  if (mpi_built() && launched_by_mpi()) {
    auto g = mpi_world();
    if (g->size() > 1) return g;
  }
  return local_group();
}

void allreduce_sum_ordered(ProcessGroup& group, float* data, int64_t n) {
  ordered_sum(group, data, n);
}
void allreduce_sum_ordered(ProcessGroup& group, double* data, int64_t n) {
  ordered_sum(group, data, n);
}

void CountingGroup::allreduce_sum(float* data, int64_t n) {
  ++calls;
  bytes += 4 * n;
  ++allreduce_calls;
  allreduce_bytes += 4 * n;
  inner_->allreduce_sum(data, n);
}
void CountingGroup::allreduce_sum(double* data, int64_t n) {
  ++calls;
  bytes += 8 * n;
  ++allreduce_calls;
  allreduce_bytes += 8 * n;
  inner_->allreduce_sum(data, n);
}
void CountingGroup::allgather(const double* in, int64_t n, double* out) {
  ++calls;
  bytes += 8 * n;
  inner_->allgather(in, n, out);
}
void CountingGroup::allgather(const uint64_t* in, int64_t n, uint64_t* out) {
  ++calls;
  bytes += 8 * n;
  inner_->allgather(in, n, out);
}
void CountingGroup::broadcast(float* data, int64_t n, int root) {
  ++calls;
  bytes += 4 * n;
  inner_->broadcast(data, n, root);
}
void CountingGroup::broadcast(uint64_t* data, int64_t n, int root) {
  ++calls;
  bytes += 8 * n;
  inner_->broadcast(data, n, root);
}
void CountingGroup::barrier() {
  ++calls;
  inner_->barrier();
}

uint64_t hash_bytes(const void* data, size_t bytes, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace minidl::dist
