/* minidl — MPI_Allreduce micro-benchmark (scripts/bench_dist.sh compiles it with mpicc -O2).
 *
 * For every message size from MIN to MAX bytes (multiplying by 4), sums a float buffer over
 * MPI_COMM_WORLD with MPI_Allreduce(MPI_SUM), as minidl's gradient reduction does (--allreduce
 * mpi: one flat float buffer per step): untimed warm-up calls, then REPS timed calls, each one
 * after an MPI_Barrier and timed alone with MPI_Wtime; a call's time is the slowest process's
 * (MPI_MAX over the ranks). Rank 0 prints one line per size:
 *
 *   bytes  reps  median_us  min_us  algbw_GB/s
 *
 * algbw = 2 (P-1)/P x bytes / median time (the bytes a ring allreduce sends per process), in
 * 1e9 bytes/s. The result is checked (every element equals the sum of the ranks' values).
 *
 * Usage: mpirun -np P allreduce_bench [MIN_BYTES [MAX_BYTES [MAX_REPS [MIN_REPS]]]]
 *        (defaults 4 16777216 1000 20). A size gets reps = clamp(2e8 / bytes, MIN_REPS,
 *        MAX_REPS) timed calls and reps / 10 + 2 warm-up calls.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp_double(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const long min_bytes = argc > 1 ? atol(argv[1]) : 4;
  const long max_bytes = argc > 2 ? atol(argv[2]) : 16L << 20;
  const long max_reps = argc > 3 ? atol(argv[3]) : 1000;
  const long min_reps = argc > 4 ? atol(argv[4]) : 20;
  if (min_bytes < 4 || max_bytes < min_bytes || min_reps < 1 || max_reps < min_reps) {
    if (rank == 0) fprintf(stderr, "allreduce_bench: bad arguments\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  float* buf = malloc((size_t)max_bytes);
  double* times = malloc(sizeof(double) * (size_t)max_reps);
  double* slowest = malloc(sizeof(double) * (size_t)max_reps);
  if (!buf || !times || !slowest) MPI_Abort(MPI_COMM_WORLD, 3);
  if (rank == 0) {
    printf("# MPI_Allreduce(float, MPI_SUM) over %d processes; time = slowest rank, median of reps\n",
           size);
    printf("%10s %6s %12s %12s %12s\n", "bytes", "reps", "median_us", "min_us", "algbw_GB/s");
  }
  /* the expected sum of (rank + 1) over the ranks: exact in float for any sane P */
  const float expected = (float)size * (float)(size + 1) / 2.0f;
  for (long bytes = min_bytes; bytes <= max_bytes; bytes *= 4) {
    const long n = bytes / 4;
    long reps = (long)(2e8 / (double)bytes);
    if (reps < min_reps) reps = min_reps;
    if (reps > max_reps) reps = max_reps;
    const long warmup = reps / 10 + 2;
    int bad = 0;
    for (long it = -warmup; it < reps; ++it) {
      for (long i = 0; i < n; ++i) buf[i] = (float)(rank + 1);
      MPI_Barrier(MPI_COMM_WORLD);
      const double t0 = MPI_Wtime();
      MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      const double t = MPI_Wtime() - t0;
      if (it >= 0) times[it] = t;
      if (buf[0] != expected || buf[n - 1] != expected) bad = 1;
    }
    MPI_Allreduce(times, slowest, (int)reps, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    int any_bad = 0;
    MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0) {
      if (any_bad) {
        fprintf(stderr, "allreduce_bench: wrong sum at %ld bytes\n", bytes);
        MPI_Abort(MPI_COMM_WORLD, 4);
      }
      qsort(slowest, (size_t)reps, sizeof(double), cmp_double);
      const double median =
          reps % 2 ? slowest[reps / 2] : 0.5 * (slowest[reps / 2 - 1] + slowest[reps / 2]);
      const double algbw = 2.0 * (size - 1) / size * (double)bytes / median / 1e9;
      printf("%10ld %6ld %12.2f %12.2f %12.4f\n", bytes, reps, median * 1e6, slowest[0] * 1e6,
             algbw);
      fflush(stdout);
    }
  }
  free(buf);
  free(times);
  free(slowest);
  MPI_Finalize();
  return 0;
}
