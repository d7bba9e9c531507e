// minidl_roofline — the ceilings of this machine's roofline (scripts/roofline.sh runs it):
//   - OpenBLAS SGEMM's GFLOP/s (through kernels::gemm, minidl's one BLAS call) at 1 and 2
//     threads: square n = 512 and 2048 as one multi-threaded call, and the shapes minidl's
//     resnet20 convolutions hand to OpenBLAS at batch 128 (core/conv.cpp's per-image im2col
//     GEMMs, core/simd/winograd.cpp's per-position GEMMs of 128 columns), which minidl runs as
//     one single-threaded call per thread at once: measured that way, `threads` copies in
//     parallel, their GFLOP/s summed. The peak is the best of them.
//   - memory bandwidth: a STREAM-like triad a[i] = b[i] + s c[i] over the OpenMP threads, three
//     arrays of --triad-mib MiB each (far beyond the caches); bytes counted as STREAM does,
//     12 per element (2 reads, 1 write; no write-allocate traffic).
// Each figure is the best of repeated runs for --min-time seconds (noise only ever adds time).
// Prints a table; --json FILE writes what `minidl bench --profile --roofline FILE` reads.
// Never run by ctest as a measurement (a test runs it with tiny sizes to check its output).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/kernels.hpp"
#include "core/simd.hpp"

using namespace minidl;

namespace {

struct Shape {
  std::string name;
  bool trans_a, trans_b;
  int64_t M, N, K;
  bool per_thread;  // minidl's way: one single-threaded call per thread, all at once
};

// resnet20 at batch 128 (2 threads; 1 thread gives the same shapes). im2col (core/conv.cpp): per
// image, O < 32 as col^T W^T [HO*WO, O], else W col [O, HO*WO], K = C * KH * KW. Winograd
// (core/simd/winograd.cpp, make_tiling): per transform position, V [O, C] U [C, T] with T = 128
// columns in every stage; its weight gradient dM [O, T] U^T [T, C].
std::vector<Shape> minidl_shapes() {
  return {
      {"im2col stem 3->16, 32x32 (col^T W^T)", true, true, 1024, 16, 27, true},
      {"im2col 16->32 stride 2, 16x16", false, false, 32, 256, 144, true},
      {"im2col 32->64 stride 2, 8x8", false, false, 64, 64, 288, true},
      {"im2col 1x1 shortcut 16->32, 16x16", false, false, 32, 256, 16, true},
      {"im2col 1x1 shortcut 32->64, 8x8", false, false, 64, 64, 32, true},
      {"winograd 16->16, 32x32 (V U)", false, false, 16, 128, 16, true},
      {"winograd 32->32, 16x16 (V U)", false, false, 32, 128, 32, true},
      {"winograd 64->64, 8x8 (V U)", false, false, 64, 128, 64, true},
      {"winograd dw 16->16 (dM U^T)", false, true, 16, 16, 128, true},
      {"winograd dw 32->32 (dM U^T)", false, true, 32, 32, 128, true},
      {"winograd dw 64->64 (dM U^T)", false, true, 64, 64, 128, true},
  };
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// Runs `once(reps)` (which does `reps` repetitions) in batches of about min_time / 10 seconds
/// until min_time has passed; returns the best batch's seconds per repetition.
template <class F>
double best_seconds(F&& once, double min_time) {
  int64_t reps = 1;
  for (;;) {  // calibrate: a batch of at least min_time / 10
    const double t0 = now();
    once(reps);
    const double dt = now() - t0;
    if (dt >= min_time / 10 || reps >= (int64_t{1} << 30)) break;
    reps *= dt > 0 ? std::max<int64_t>(2, static_cast<int64_t>(min_time / 10 / dt)) : 10;
  }
  double best = 1e300;
  const double start = now();
  do {
    const double t0 = now();
    once(reps);
    best = std::min(best, (now() - t0) / static_cast<double>(reps));
  } while (now() - start < min_time);
  return best;
}

double sgemm_gflops(const Shape& s, int threads, double min_time) {
  const int copies = s.per_thread ? threads : 1;
  std::vector<std::vector<float>> A(copies), B(copies), C(copies);
  for (int i = 0; i < copies; ++i) {
    A[i].assign(s.M * s.K, 0.5f);
    B[i].assign(s.K * s.N, 0.25f);
    C[i].assign(s.M * s.N, 0.0f);
  }
  set_num_threads(threads);
  const double seconds = best_seconds(
      [&](int64_t reps) {
        if (s.per_thread) {
#pragma omp parallel num_threads(threads)
          {
            const int t = omp_get_thread_num();
            for (int64_t r = 0; r < reps; ++r)
              kernels::gemm(s.trans_a, s.trans_b, s.M, s.N, s.K, 1.0f, A[t].data(), B[t].data(),
                            0.0f, C[t].data());
          }
        } else {
          for (int64_t r = 0; r < reps; ++r)
            kernels::gemm(s.trans_a, s.trans_b, s.M, s.N, s.K, 1.0f, A[0].data(), B[0].data(), 0.0f,
                          C[0].data());
        }
      },
      min_time);
  return 2.0 * s.M * s.N * s.K * copies / seconds / 1e9;
}

double triad_gbs(int64_t n, int threads, double min_time) {
  float* a = static_cast<float*>(std::aligned_alloc(64, ((n * 4 + 63) / 64) * 64));
  float* b = static_cast<float*>(std::aligned_alloc(64, ((n * 4 + 63) / 64) * 64));
  float* c = static_cast<float*>(std::aligned_alloc(64, ((n * 4 + 63) / 64) * 64));
  if (!a || !b || !c) throw std::runtime_error("triad: out of memory");
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < n; ++i) {  // first touch by the thread that streams it
    a[i] = 0.0f;
    b[i] = 1.0f;
    c[i] = 2.0f;
  }
  const float s = 3.0f;
  const double seconds = best_seconds(
      [&](int64_t reps) {
        for (int64_t r = 0; r < reps; ++r) {
#pragma omp parallel for schedule(static) num_threads(threads)
          for (int64_t i = 0; i < n; ++i) a[i] = b[i] + s * c[i];
        }
      },
      min_time);
  const volatile float sink = a[n / 2];  // keep the stores
  (void)sink;
  std::free(a);
  std::free(b);
  std::free(c);
  return 12.0 * static_cast<double>(n) / seconds / 1e9;
}

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

std::vector<int64_t> int_list(const std::string& text, const char* flag) {
  std::vector<int64_t> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, comma - pos);
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 1)
      throw std::invalid_argument(std::string(flag) + ": expected positive integers, got " + text);
    out.push_back(v);
    pos = comma + 1;
  }
  return out;
}

const char* kUsage =
    "usage: minidl_roofline [--threads 1,2] [--square 512,2048] [--min-time 1] [--triad-mib 256]\n"
    "                       [--no-minidl-shapes] [--json FILE]\n";

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> threads{1, 2}, square{512, 2048};
  double min_time = 1.0;
  int64_t triad_mib = 256;
  bool with_minidl_shapes = true;
  std::string json_path;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw std::invalid_argument(a + ": needs a value");
        return argv[++i];
      };
      if (a == "--threads") {
        threads = int_list(value(), "--threads");
      } else if (a == "--square") {
        square = int_list(value(), "--square");
      } else if (a == "--min-time") {
        min_time = std::atof(value().c_str());
        if (!(min_time > 0)) throw std::invalid_argument("--min-time: expected seconds > 0");
      } else if (a == "--triad-mib") {
        triad_mib = int_list(value(), "--triad-mib").at(0);
      } else if (a == "--no-minidl-shapes") {
        with_minidl_shapes = false;
      } else if (a == "--json") {
        json_path = value();
      } else if (a == "--help" || a == "-h") {
        std::printf("%s", kUsage);
        return 0;
      } else {
        throw std::invalid_argument("unknown argument " + a);
      }
    }
    std::vector<Shape> shapes;
    for (int64_t n : square)
      shapes.push_back({"square " + std::to_string(n), false, false, n, n, n, false});
    if (with_minidl_shapes) {
      for (const Shape& s : minidl_shapes()) shapes.push_back(s);
    }
    const int64_t triad_floats = triad_mib * 1024 * 1024 / 4;

    nlohmann::json j{{"tool", "minidl_roofline"},        {"cpu", cpu_name()},
                     {"simd", simd::describe()},         {"blas", blas_config()},
                     {"min_time_seconds", min_time},     {"sgemm", nlohmann::json::array()},
                     {"triad", nlohmann::json::array()}, {"ceilings", nlohmann::json::array()}};
    std::printf("roofline of %s\nBLAS: %s\nminidl SIMD: %s\n\n", cpu_name().c_str(),
                blas_config().c_str(), simd::describe().c_str());
    std::printf("%-7s  %-40s  %5s  %5s  %5s  %6s  %9s\n", "threads", "SGEMM", "M", "N", "K",
                "copies", "GFLOP/s");
    std::vector<double> peak(threads.size(), 0.0), bw(threads.size(), 0.0);
    for (size_t ti = 0; ti < threads.size(); ++ti) {
      const int t = static_cast<int>(threads[ti]);
      for (const Shape& s : shapes) {
        const double g = sgemm_gflops(s, t, min_time);
        peak[ti] = std::max(peak[ti], g);
        const int copies = s.per_thread ? t : 1;
        std::printf("%-7d  %-40s  %5lld  %5lld  %5lld  %6d  %9.1f\n", t, s.name.c_str(),
                    static_cast<long long>(s.M), static_cast<long long>(s.N),
                    static_cast<long long>(s.K), copies, g);
        std::fflush(stdout);
        j["sgemm"].push_back({{"threads", t},
                              {"name", s.name},
                              {"M", s.M},
                              {"N", s.N},
                              {"K", s.K},
                              {"trans_a", s.trans_a},
                              {"trans_b", s.trans_b},
                              {"copies", copies},
                              {"gflops", g}});
      }
    }
    std::printf("\n%-7s  %-40s  %9s\n", "threads", "triad a = b + s c", "GB/s");
    for (size_t ti = 0; ti < threads.size(); ++ti) {
      const int t = static_cast<int>(threads[ti]);
      bw[ti] = triad_gbs(triad_floats, t, min_time);
      std::printf("%-7d  %-40s  %9.1f\n", t, (std::to_string(triad_mib) + " MiB per array").c_str(),
                  bw[ti]);
      j["triad"].push_back({{"threads", t}, {"mib_per_array", triad_mib}, {"gb_per_s", bw[ti]}});
    }
    std::printf("\nceilings (minidl bench --profile --roofline FILE reads these):\n");
    for (size_t ti = 0; ti < threads.size(); ++ti) {
      std::printf("  %lld thread(s): SGEMM peak %.1f GFLOP/s, triad %.1f GB/s, ridge %.1f FLOP/B\n",
                  static_cast<long long>(threads[ti]), peak[ti], bw[ti], peak[ti] / bw[ti]);
      j["ceilings"].push_back(
          {{"threads", threads[ti]}, {"sgemm_peak_gflops", peak[ti]}, {"triad_gb_per_s", bw[ti]}});
    }
    if (!json_path.empty()) {
      std::ofstream out(json_path);
      out << j.dump(2) << "\n";
      if (!out) throw std::runtime_error("--json " + json_path + ": cannot write it");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "minidl_roofline: error: %s\n%s", e.what(), kUsage);
    return 1;
  }
  return 0;
}
