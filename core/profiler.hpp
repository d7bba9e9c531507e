// minidl — a per-op profiler, like torch.profiler's key_averages(): wall time, call count and
// FLOPs per (op name, pass), printed as a table by `minidl bench --profile` and
// `minidl train --profile`.
//
// Every op opens a Scope named after its node at the top of its forward function, and
// Tensor::backward opens one with backward = true around each node's closure, so an op's
// forward and backward rows carry the same name. Ops whose FLOPs are defined report them with
// add_flops (linear; conv2d in core/conv.cpp); bandwidth-bound ops report none.
// Two more counts, for the roofline (scripts/roofline.sh, docs/speed.md#the-roofline):
// - add_algorithm_flops: the FLOPs of the algorithm that ran, where they differ from add_flops'
//   definition (conv2d counts the direct convolution's 2 * N * O * HO * WO * C * KH * KW with
//   add_flops whatever the algorithm, and Winograd's GEMMs plus transforms here);
// - add_bytes: an estimate of the bytes the op moves to and from memory: every array it streams
//   through, counted once per pass the kernel makes over it (BatchNorm's training forward reads
//   x twice: its statistics, then y), 4 bytes a float; caches and a GEMM's re-reads of its
//   packed panels are not counted, so it is a lower bound of the memory traffic.
//
// Off by default. A Scope of a disabled profiler costs one branch: no clock read, no
// allocation, no lock.
//
// Global state: the profiler's registry (the enabled flag and the aggregate per (name, pass))
// is process-wide. This is a deliberate exception to the rule "no globals except the thread
// pool and the RNG seed", for the thread pool's reason: it is an instrument of the whole
// process, and passing it through every op's signature would burden every caller.
//
// Threads: Scopes are opened and closed on the main thread only (ops are called from the main
// thread and parallelize inside with OpenMP), so the aggregate is a plain map without a lock.
// Call set_enabled, reset, rows and table on that thread too, while no Scope is open. The
// innermost active Scope is tracked per thread: add_flops from an OpenMP worker thread finds
// none and does nothing, so call it outside parallel regions.
#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <cstdint>
#include <string>
#include <vector>

namespace minidl::profiler {

namespace detail {
/// The enabled flag (read by the inline fast paths below; use enabled() / set_enabled()).
inline std::atomic<bool> g_enabled{false};
/// add_flops' (and add_algorithm_flops', add_bytes') slow path: adds to this thread's innermost
/// open Scope, if any.
void add_flops_to_current(double flops, double algorithm_flops, double bytes);
}  // namespace detail

/// Whether Scopes record (false at start-up).
inline bool enabled() { return detail::g_enabled.load(std::memory_order_relaxed); }

/// Turns recording on or off. Scopes already open keep the state they were opened with.
/// Does not clear what was recorded (see reset()).
void set_enabled(bool on);

/// Clears every recorded row. The enabled flag is unchanged.
void reset();

/// RAII timer of one op call: from construction to destruction (std::chrono::steady_clock),
/// added to the row (name, backward) with one call and the FLOPs reported by add_flops while it
/// was the innermost open Scope on this thread.
/// `name` is copied into the registry when the Scope closes (it need not outlive the Scope).
/// Scopes may nest; each records its inclusive time under its own name, so a nested Scope's
/// time counts in its parent's row too (ops do not nest in practice).
class Scope {
 public:
  explicit Scope(const char* name, bool backward = false)
      : name_(name), backward_(backward), active_(enabled()) {
    if (active_) open();
  }
  ~Scope() {
    if (active_) close();
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  friend void detail::add_flops_to_current(double flops, double algorithm_flops, double bytes);
  void open();
  void close();

  const char* name_;
  bool backward_;
  bool active_;
  // Set by open(), so a disabled Scope writes nothing else.
  Scope* parent_;
  double flops_, algorithm_flops_, bytes_;
  std::chrono::steady_clock::time_point start_;
};

/// Adds `flops` floating-point operations (a multiply-add counts 2) to the innermost open
/// Scope on this thread. No-op when the profiler is disabled or no Scope is open on this thread.
inline void add_flops(double flops) {
  if (enabled()) detail::add_flops_to_current(flops, 0.0, 0.0);
}

/// Adds the FLOPs of the algorithm that ran (when they differ from add_flops' definition count)
/// to the innermost open Scope on this thread; as add_flops otherwise.
inline void add_algorithm_flops(double flops) {
  if (enabled()) detail::add_flops_to_current(0.0, flops, 0.0);
}

/// Adds an estimate of the bytes moved to and from memory (see the top of this file) to the
/// innermost open Scope on this thread; as add_flops otherwise.
inline void add_bytes(double bytes) {
  if (enabled()) detail::add_flops_to_current(0.0, 0.0, bytes);
}

/// One aggregated row: every closed Scope with this (name, backward).
struct Row {
  std::string name;
  bool backward;           ///< true: the op's backward closure (opened by Tensor::backward)
  int64_t calls;           ///< Scopes closed
  double seconds;          ///< summed wall time, inclusive of nested Scopes
  double flops;            ///< summed add_flops (0 for ops that report none)
  double algorithm_flops;  ///< summed add_algorithm_flops, or flops where none were reported
  double bytes;            ///< summed add_bytes (0 for ops that report none)
};

/// The ceilings of a roofline (scripts/roofline.sh writes them as JSON) at one thread count.
struct Ceilings {
  int threads = 0;
  double gflops = 0.0;       ///< OpenBLAS SGEMM's peak GFLOP/s
  double bytes_per_s = 0.0;  ///< memory bandwidth (a STREAM-like triad), bytes/s
  std::string source;        ///< the file read, for the table's caption
};

/// The ceilings for `threads` from a roofline JSON file (scripts/roofline.sh --json): its
/// "ceilings" array's entry {"threads", "sgemm_peak_gflops", "triad_gb_per_s"} with that thread
/// count. Throws std::runtime_error naming the file when it cannot be read or parsed, or has no
/// entry for `threads`.
Ceilings read_ceilings(const std::string& path, int threads);

/// The fraction of the roofline's ceiling a row reached, or a negative value where the row has
/// neither FLOPs nor bytes. Rows with FLOPs: algorithm GFLOP/s over min(peak, intensity *
/// bandwidth), intensity = algorithm_flops / bytes (the peak alone when bytes are unknown). Rows
/// with bytes only: bytes/s over the bandwidth.
double roofline_fraction(const Row& row, const Ceilings& ceilings);

/// The recorded rows, by decreasing seconds (ties: by name, forward first).
std::vector<Row> rows();

/// A printable table of rows(), by decreasing total time, one line per row (newline-terminated):
///   op | pass (forward/backward) | calls | total ms | ms per step (total / steps) |
///   % of total (of total_seconds) | GFLOP/s (flops / seconds / 1e9; blank where flops == 0) |
///   alg GFLOP/s (algorithm_flops / seconds; blank where the op reported none of its own) |
///   MB/step (bytes / steps / 1e6) | GB/s (bytes / seconds / 1e9; both blank without bytes) |
///   and, with `ceilings`, % roof (100 * roofline_fraction) and a caption naming the ceilings
/// then "(not in any op)" = total_seconds minus the rows' summed seconds (negative only if
/// Scopes nested), and a "total" row of total_seconds.
/// total_seconds: the wall time the rows were recorded in (e.g. the timed steps), in seconds;
/// steps: how many steps it covers. Throws std::invalid_argument unless total_seconds > 0 and
/// steps >= 1.
std::string table(double total_seconds, int64_t steps, const Ceilings* ceilings = nullptr);

}  // namespace minidl::profiler
