// minidl --version: what this binary is (version, git commit, build type, BLAS, SIMD width).
#include <stdexcept>
#include <string>

#include "apps/cli.hpp"
#include "core/kernels.hpp"

#ifndef MINIDL_VERSION  // set by CMakeLists.txt for this file
#define MINIDL_VERSION "unknown"
#define MINIDL_GIT_HASH "unknown"
#define MINIDL_BUILD_TYPE "unknown"
#define MINIDL_MPI_BUILT 0
#endif

namespace minidl::app {

namespace {
/// The widest vector instruction set this file was compiled for (the whole build shares the
/// flags, e.g. -march=native) and its register width.
std::string simd_text() {
#if defined(__AVX512F__)
  return "512-bit vectors (AVX-512F)";
#elif defined(__AVX2__)
  return "256-bit vectors (AVX2)";
#elif defined(__AVX__)
  return "256-bit vectors (AVX)";
#elif defined(__SSE2__)
  return "128-bit vectors (SSE2)";
#elif defined(__ARM_NEON)
  return "128-bit vectors (NEON)";
#else
  return "none (scalar code)";
#endif
}
}  // namespace

std::string version_text() {
  std::string text = "minidl " MINIDL_VERSION " (git " MINIDL_GIT_HASH ", at configure time)\n";
  text += "build type: " MINIDL_BUILD_TYPE "\n";
  text += "BLAS: " + blas_config() + "\n";
  text += "SIMD: " + simd_text() + "\n";
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
