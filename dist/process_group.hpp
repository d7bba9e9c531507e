// minidl — process groups: the collectives that data-parallel training needs, behind one
// interface (torch.distributed's ProcessGroup, reduced to what minidl uses). A group is `size`
// processes numbered 0..size-1; every collective must be called by every process of the group,
// in the same order, with the same counts.
//
//   local_group()  size 1: every collective is a copy or nothing (the default; no MPI needed)
//   mpi_world()    MPI_COMM_WORLD of Debian's OpenMPI (built when CMake finds MPI: MINIDL_MPI)
//   CountingGroup  wraps a group and counts calls and bytes (tests, bench)
//
// Nothing above dist/ calls MPI directly.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace minidl::dist {

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  /// This process's number, 0..size()-1.
  virtual int rank() const = 0;
  /// Processes in the group (world_size).
  virtual int size() const = 0;
  /// Sums data [n] over the group, in place: every process ends with the same sum. The order of
  /// the additions is the library's (MPI_Allreduce): for 3 or more processes it may change
  /// the last bits between runs of different sizes or libraries; allreduce_sum_ordered does not.
  virtual void allreduce_sum(float* data, int64_t n) = 0;
  virtual void allreduce_sum(double* data, int64_t n) = 0;
  /// out [size * n] = every process's in [n], in rank order.
  virtual void allgather(const double* in, int64_t n, double* out) = 0;
  virtual void allgather(const uint64_t* in, int64_t n, uint64_t* out) = 0;
  /// data [n] = root's data [n] on every process.
  virtual void broadcast(float* data, int64_t n, int root) = 0;
  virtual void broadcast(uint64_t* data, int64_t n, int root) = 0;
  /// Returns when every process has called it.
  virtual void barrier() = 0;
  /// The name of the host this process runs on (gethostname).
  virtual std::string host() const;
  /// "local" or "mpi".
  virtual std::string backend() const = 0;
};

/// The size-1 group.
std::shared_ptr<ProcessGroup> local_group();

/// Whether this build has the MPI group (CMake option MINIDL_MPI).
bool mpi_built();

/// Whether this process was started by an MPI launcher (mpirun / mpiexec sets
/// OMPI_COMM_WORLD_SIZE or PMI_SIZE).
bool launched_by_mpi();

/// MPI_COMM_WORLD, initializing MPI on the first call (MPI_THREAD_FUNNELED: only the thread
/// that called this makes MPI calls; MPI_Finalize runs at exit). Throws std::runtime_error when
/// the build has no MPI.
std::shared_ptr<ProcessGroup> mpi_world();

/// mpi_world() when launched by an MPI launcher with more than one process and MPI is built,
/// else local_group().
std::shared_ptr<ProcessGroup> default_group();

/// Sums data [n] over `group` in rank order: an allgather, then (((r0 + r1) + r2) + ...) on every
/// process, so the result is bit-identical on every process and independent of MPI's choice of
/// algorithm. Costs size x n values of traffic instead of about 2n.
void allreduce_sum_ordered(ProcessGroup& group, float* data, int64_t n);
void allreduce_sum_ordered(ProcessGroup& group, double* data, int64_t n);

/// Counts the collectives made through it (and their payload bytes), passing each to `inner`.
class CountingGroup : public ProcessGroup {
 public:
  explicit CountingGroup(std::shared_ptr<ProcessGroup> inner) : inner_(std::move(inner)) {}
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  void allreduce_sum(float* data, int64_t n) override;
  void allreduce_sum(double* data, int64_t n) override;
  void allgather(const double* in, int64_t n, double* out) override;
  void allgather(const uint64_t* in, int64_t n, uint64_t* out) override;
  void broadcast(float* data, int64_t n, int root) override;
  void broadcast(uint64_t* data, int64_t n, int root) override;
  void barrier() override;
  std::string host() const override { return inner_->host(); }
  std::string backend() const override { return inner_->backend(); }

  int64_t calls = 0;  ///< collectives made (barrier included)
  int64_t bytes = 0;  ///< payload bytes this process contributed (sent or reduced)
  int64_t allreduce_calls = 0, allreduce_bytes = 0;  ///< allreduce_sum alone
  void reset() { calls = bytes = allreduce_calls = allreduce_bytes = 0; }

 private:
  std::shared_ptr<ProcessGroup> inner_;
};

/// FNV-1a 64-bit hash of `bytes` bytes at `data`, continuing from `h` (replica checks).
uint64_t hash_bytes(const void* data, size_t bytes, uint64_t h = 14695981039346656037ull);

}  // namespace minidl::dist
