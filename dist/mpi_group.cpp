// The MPI group (MPI_COMM_WORLD), compiled only when CMake finds MPI (MINIDL_MPI); otherwise
// dist/no_mpi.cpp provides mpi_built() = false and an mpi_world() that throws.
// MPI's C API only: OpenMPI's mpi.h would otherwise pull in its deprecated C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>

#include "dist/process_group.hpp"

namespace minidl::dist {

namespace {

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw std::runtime_error(std::string("MPI: ") + what + " failed: " + std::string(text, len));
}

int count_of(int64_t n) {
  if (n < 0 || n > std::numeric_limits<int>::max())
    throw std::invalid_argument("MPI: a collective of " + std::to_string(n) +
                                " values is beyond MPI's int counts");
  return static_cast<int>(n);
}

class MpiGroup : public ProcessGroup {
 public:
  MpiGroup() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      std::atexit([] {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Finalize();
      });
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void allreduce_sum(float* data, int64_t n) override {
    check(MPI_Allreduce(MPI_IN_PLACE, data, count_of(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
          "MPI_Allreduce");
  }
  void allreduce_sum(double* data, int64_t n) override {
    check(MPI_Allreduce(MPI_IN_PLACE, data, count_of(n), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
          "MPI_Allreduce");
  }
  void allgather(const double* in, int64_t n, double* out) override {
    check(MPI_Allgather(in, count_of(n), MPI_DOUBLE, out, count_of(n), MPI_DOUBLE, MPI_COMM_WORLD),
          "MPI_Allgather");
  }
  void allgather(const uint64_t* in, int64_t n, uint64_t* out) override {
    check(MPI_Allgather(in, count_of(n), MPI_UINT64_T, out, count_of(n), MPI_UINT64_T,
                        MPI_COMM_WORLD),
          "MPI_Allgather");
  }
  void broadcast(float* data, int64_t n, int root) override {
    check(MPI_Bcast(data, count_of(n), MPI_FLOAT, root, MPI_COMM_WORLD), "MPI_Bcast");
  }
  void broadcast(uint64_t* data, int64_t n, int root) override {
    check(MPI_Bcast(data, count_of(n), MPI_UINT64_T, root, MPI_COMM_WORLD), "MPI_Bcast");
  }
  void barrier() override { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }
  std::string backend() const override { return "mpi"; }

 private:
  int rank_ = 0, size_ = 1;
};

}  // namespace

bool mpi_built() { return true; }

std::shared_ptr<ProcessGroup> mpi_world() {
  static std::shared_ptr<ProcessGroup> world = std::make_shared<MpiGroup>();
  return world;
}

}  // namespace minidl::dist
