// minidl --version: what this binary is (version, git commit, build type, BLAS, the SIMD path in
// use and its vector width).
#include <stdexcept>
#include <string>

#include "apps/cli.hpp"
#include "core/kernels.hpp"
#include "core/simd.hpp"

#ifndef MINIDL_VERSION  // set by CMakeLists.txt for this file
#define MINIDL_VERSION "unknown"
#define MINIDL_GIT_HASH "unknown"
#define MINIDL_BUILD_TYPE "unknown"
#define MINIDL_MPI_BUILT 0
#endif

namespace minidl::app {

std::string version_text() {
  std::string text = "minidl " MINIDL_VERSION " (git " MINIDL_GIT_HASH ", at configure time)\n";
  text += "build type: " MINIDL_BUILD_TYPE "\n";
  text += "BLAS: " + blas_config() + "\n";
  text += "SIMD: " + simd::describe() + "\n";
  text += std::string("MPI: ") + (MINIDL_MPI_BUILT ? "built" : "not built") + "\n";
#if defined(__clang__) || !defined(__GNUC__)
  text += "compiler: " __VERSION__ "\n";
#else
  text += "compiler: GCC " __VERSION__ "\n";
#endif
  text += "plot scripts: ";
  try {
    const std::string script = find_plot_script("plot_run.py");
    text += script.substr(0, script.rfind('/'));  // no final newline: CLI11 adds it
  } catch (const std::runtime_error&) {
    text += "not found (set MINIDL_SCRIPTS)";
  }
  return text;
}

}  // namespace minidl::app
