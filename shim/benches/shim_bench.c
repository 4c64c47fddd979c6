/* Cost of the calls the shim wraps on the hot path: cuMemAlloc_v2 + cuMemFree_v2 pairs and
 * cuMemGetInfo_v2, through a handle from dlopen/dlsym as the CUDA runtime and cuda-bindings get
 * them. Prints `pair_ns N` and `info_ns N`: CPU time of this thread per operation (so that
 * processes sharing few cores do not count each other's time). Run by scripts/bench-shim.sh with
 * and without the shim, several processes at once.
 * Usage: shim_bench ITERATIONS [BYTES] */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef int (*init_t)(unsigned);
typedef int (*dget_t)(int *, int);
typedef int (*retain_t)(void **, int);
typedef int (*setcur_t)(void *);
typedef int (*alloc_t)(unsigned long long *, size_t);
typedef int (*free_t)(unsigned long long);
typedef int (*info_t)(size_t *, size_t *);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    size_t bytes = argc > 2 ? strtoull(argv[2], 0, 0) : (1 << 20);
    void *h = dlopen("libcuda.so.1", RTLD_NOW);
    if (!h) { fprintf(stderr, "no libcuda.so.1\n"); return 1; }
    init_t init = (init_t)dlsym(h, "cuInit");
    dget_t dget = (dget_t)dlsym(h, "cuDeviceGet");
    retain_t retain = (retain_t)dlsym(h, "cuDevicePrimaryCtxRetain");
    setcur_t setcur = (setcur_t)dlsym(h, "cuCtxSetCurrent");
    alloc_t alloc = (alloc_t)dlsym(h, "cuMemAlloc_v2");
    free_t fr = (free_t)dlsym(h, "cuMemFree_v2");
    info_t info = (info_t)dlsym(h, "cuMemGetInfo_v2");
    int d; void *ctx;
    if (init(0) || dget(&d, 0) || retain(&ctx, d) || setcur(ctx)) { fprintf(stderr, "init failed\n"); return 1; }
    unsigned long long p;
    /* Warm up: first calls resolve symbols and register in the ledger. */
    for (int i = 0; i < 1000; i++) { if (alloc(&p, bytes) || fr(p)) { fprintf(stderr, "alloc failed\n"); return 1; } }
    double t0 = now();
    for (long i = 0; i < n; i++) {
        if (alloc(&p, bytes) || fr(p)) { fprintf(stderr, "alloc failed at %ld\n", i); return 1; }
    }
    double t1 = now();
    size_t f, t;
    for (long i = 0; i < n; i++) info(&f, &t);
    double t2 = now();
    printf("pair_ns %.1f\ninfo_ns %.1f\n", (t1 - t0) / n, (t2 - t1) / n);
    return 0;
}
