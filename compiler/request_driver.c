/*
 * A driver for `python -m compiler request-bench` (compiled with -I compiler/): scores fresh requests through a model
 * library's C entry points with no Python in the loop, for kernel-only wall times and for
 * callgrind (whose --toggle-collect counts the instructions of one entry point).
 *
 * usage: request_driver LIBRARY DATA ENTRY MODE KERNEL BATCH REQUESTS
 *   DATA: int64 n_products, int64 n_sessions, int64 n_pairs; float32 category codes, prices
 *         and popularity (n_products + 1 each); the sparse affinity: int64 indptr
 *         (n_products + 2), int32 related and float32 strength (n_pairs each); float64 sessions
 *         (n_sessions x 10, the session inputs). Candidates, current and previous products are
 *         drawn here.
 *   ENTRY: "score" (reco_request_score; MODE 0 auto, 1 flat, 2 fold; KERNEL 0 portable, 1 avx2)
 *          or "dense" (rows built beforehand, then only the model's reco_predict_dense).
 * Candidate kernels only (no view history is passed). Prints the median nanoseconds per request.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "request_kernel.h"

typedef int64_t (*ScoreFn)(const RecoProductTables*, const void*, const void*, int32_t, int32_t,
                           const void*, int32_t, int64_t, const void*, const void*, void*);
typedef int64_t (*RowsFn)(const RecoProductTables*, const void*, const void*, const void*,
                          int32_t, int64_t, const void*, const void*, void*);
typedef int32_t (*DenseFn)(const float*, int64_t, int32_t, double*);

#define N_COLUMNS 27

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t next_random(void) { /* splitmix64 */
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static void* read_exactly(FILE* f, size_t bytes) {
  void* p = malloc(bytes ? bytes : 1);
  if (p == NULL || fread(p, 1, bytes, f) != bytes) {
    fprintf(stderr, "request_driver: short data file\n");
    exit(2);
  }
  return p;
}

static int compare_i64(const void* a, const void* b) {
  const int64_t x = *(const int64_t*)a, y = *(const int64_t*)b;
  return (x > y) - (x < y);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char** argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: %s LIBRARY DATA score|dense MODE KERNEL BATCH REQUESTS\n", argv[0]);
    return 2;
  }
  void* library = dlopen(argv[1], RTLD_NOW);
  if (library == NULL) {
    fprintf(stderr, "request_driver: %s\n", dlerror());
    return 2;
  }
  const ScoreFn score = (ScoreFn)dlsym(library, "reco_request_score");
  const RowsFn rows_of = (RowsFn)dlsym(library, "reco_request_rows");
  const DenseFn dense = (DenseFn)dlsym(library, "reco_predict_dense");
  if (score == NULL || rows_of == NULL || dense == NULL) {
    fprintf(stderr, "request_driver: %s lacks the request kernel\n", argv[1]);
    return 2;
  }
  FILE* data = fopen(argv[2], "rb");
  if (data == NULL) {
    perror(argv[2]);
    return 2;
  }
  const int64_t* header = read_exactly(data, 3 * sizeof(int64_t));
  const int64_t n_products = header[0], n_sessions = header[1];
  const size_t padded = (size_t)n_products + 1, n_pairs = (size_t)header[2];
  RecoProductTables tables = {n_products, read_exactly(data, padded * sizeof(float)),
                              read_exactly(data, padded * sizeof(float)),
                              read_exactly(data, padded * sizeof(float)),
                              read_exactly(data, (padded + 1) * sizeof(int64_t)),
                              read_exactly(data, n_pairs * sizeof(int32_t)),
                              read_exactly(data, n_pairs * sizeof(float))};
  const double* sessions = read_exactly(data, (size_t)n_sessions * 10 * sizeof(double));
  fclose(data);

  const int dense_only = strcmp(argv[3], "dense") == 0;
  const int32_t mode = atoi(argv[4]), kernel = atoi(argv[5]);
  const int64_t batch = atoll(argv[6]), requests = atoll(argv[7]);
  int64_t* candidates = malloc(sizeof(int64_t) * batch * requests);
  int64_t* context = malloc(sizeof(int64_t) * 4 * requests);
  for (int64_t i = 0; i < batch * requests; ++i)
    candidates[i] = (int64_t)(next_random() % (uint64_t)n_products);
  for (int64_t i = 0; i < 4 * requests; ++i) /* current, previous 1-3; one in 8 is "none" */
    context[i] = next_random() % 8 == 0 ? -1 : (int64_t)(next_random() % (uint64_t)n_products);
  float* rows = malloc(sizeof(float) * N_COLUMNS * batch * (dense_only ? requests : 1));
  double* out = malloc(sizeof(double) * batch);
  int64_t* elapsed = malloc(sizeof(int64_t) * requests);

  RecoSession* session = malloc(sizeof(RecoSession) * requests);
  for (int64_t r = 0; r < requests; ++r) {
    memcpy(session[r].inputs, sessions + (r % n_sessions) * 10, sizeof session[r].inputs);
    session[r].current_index = context[4 * r];
    memcpy(session[r].previous_index, context + 4 * r + 1, sizeof session[r].previous_index);
    if (dense_only) /* the rows a numpy builder would have made, outside the measurement */
      rows_of(&tables, &session[r], NULL, candidates + r * batch, 8, batch, NULL, NULL,
              rows + r * batch * N_COLUMNS);
  }
  for (int64_t r = 0; r < requests; ++r) {
    const int64_t began = now_ns();
    int64_t status;
    if (dense_only)
      status = dense(rows + r * batch * N_COLUMNS, batch, N_COLUMNS, out);
    else
      status = score(&tables, &session[r], NULL, mode, kernel, candidates + r * batch, 8, batch,
                     NULL, NULL, out);
    elapsed[r] = now_ns() - began;
    if (status != 0) {
      fprintf(stderr, "request_driver: request %lld refused: status %lld\n", (long long)r,
              (long long)status);
      return 1;
    }
  }
  qsort(elapsed, (size_t)requests, sizeof(int64_t), compare_i64);
  printf("%lld\n", (long long)elapsed[requests / 2]);
  return 0;
}
