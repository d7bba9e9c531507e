// minidl — which SIMD path runs (core/simd.hpp): the paths this build has, what each needs of the
// CPU, MINIDL_ISA, and the choice, made once per process.
#include "core/simd.hpp"

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace minidl::simd {

// Each path's table (core/simd/table.cpp, compiled once per path).
#ifdef MINIDL_SIMD_PORTABLE
namespace sse2 {
const Kernels& table();
}
namespace avx2 {
const Kernels& table();
}
namespace avx512 {
const Kernels& table();
}
#else
namespace native {
const Kernels& table();
}
#endif

namespace {

struct Path {
  const char* name;
  const Kernels& (*table)();
  bool (*cpu_runs)();
  const char* needs;  // what the CPU must have, for the refusal message
};

#ifdef MINIDL_SIMD_PORTABLE
// The x86-64 micro-architecture levels the paths are compiled for (-march=x86-64-v3, -v4).
// __builtin_cpu_supports also checks that the OS saves the AVX / AVX-512 registers (XCR0).
bool runs_anywhere() { return true; }
bool runs_avx2() {
  __builtin_cpu_init();
#if defined(__GNUC__) && !defined(__clang__)
  return __builtin_cpu_supports("x86-64-v3");
#else
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("bmi2");
#endif
}
bool runs_avx512() {
  __builtin_cpu_init();
#if defined(__GNUC__) && !defined(__clang__)
  return __builtin_cpu_supports("x86-64-v4");
#else
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#endif
}
// Narrowest first.
const Path kPaths[] = {
    {"sse2", &sse2::table, &runs_anywhere, "x86-64"},
    {"avx2", &avx2::table, &runs_avx2, "AVX2, FMA, BMI2 (x86-64-v3)"},
    {"avx512", &avx512::table, &runs_avx512, "AVX-512F/BW/DQ/VL (x86-64-v4)"},
};
constexpr bool kPortable = true;
#else
bool runs_native() { return true; }  // built for this CPU (-march=native)
const Path kPaths[] = {{"native", &native::table, &runs_native, "the build machine's CPU"}};
constexpr bool kPortable = false;
#endif

std::string path_names(const char* separator) {
  std::string names;
  for (const Path& p : kPaths) names += (names.empty() ? "" : separator) + std::string(p.name);
  return names;
}

/// The environment's MINIDL_ISA ("" when unset).
std::string requested() {
  const char* env = std::getenv("MINIDL_ISA");
  return env ? env : "";
}

const Kernels& choose() {
  const std::string want = requested();
  if (want.empty()) {  // the widest path the CPU runs (the narrowest always runs)
    const Path* best = &kPaths[0];
    for (const Path& p : kPaths)
      if (p.cpu_runs()) best = &p;
    return best->table();
  }
  for (const Path& p : kPaths) {
    if (want != p.name) continue;
    if (!p.cpu_runs()) {
      throw std::runtime_error("MINIDL_ISA=" + want + ": this CPU cannot run the " + want +
                               " kernels (they need " + p.needs + "); unset MINIDL_ISA to " +
                               "take the widest this CPU runs");
    }
    return p.table();
  }
  if (!kPortable) {
    throw std::runtime_error("MINIDL_ISA=" + want +
                             ": this build has one SIMD path, native (-march=native); build with "
                             "cmake -DMINIDL_NATIVE=OFF for the sse2, avx2 and avx512 paths");
  }
  throw std::runtime_error("MINIDL_ISA=" + want + ": expected one of " + path_names(", ") +
                           " (or unset: the widest this CPU runs)");
}

}  // namespace

const Kernels& active() {
  static const Kernels& kernels = choose();
  return kernels;
}

std::vector<const Kernels*> runnable() {
  std::vector<const Kernels*> tables;
  for (const Path& p : kPaths)
    if (p.cpu_runs()) tables.push_back(&p.table());
  return tables;
}

std::vector<std::string> built_paths() {
  std::vector<std::string> names;
  for (const Path& p : kPaths) names.push_back(p.name);
  return names;
}

std::string describe() {
  const Kernels& k = active();
  std::string text = std::string(k.name) + " kernels, " + k.vectors;
  if (!kPortable) return text + " (-march=native build: one path)";
  text += requested().empty() ? "; chosen for this CPU" : "; chosen by MINIDL_ISA";
  return text + " (portable build with " + path_names(", ") + "; MINIDL_ISA=" + path_names("|") +
         " chooses)";
}

}  // namespace minidl::simd
