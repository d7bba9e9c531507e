// A build without MPI (CMake found none, or -DMINIDL_MPI=OFF): only the local group exists.
#include <stdexcept>

#include "dist/process_group.hpp"

namespace minidl::dist {

bool mpi_built() { return false; }

std::shared_ptr<ProcessGroup> mpi_world() {
  throw std::runtime_error(
      "this minidl was built without MPI (install libopenmpi-dev and rebuild: CMake option "
      "MINIDL_MPI)");
}

}  // namespace minidl::dist
