/* CUDA start-up as the runtime does it: dlopen("libcuda.so.1"), dlsym of the entry points, then
 * cuInit, cuDeviceGet and a first context. Prints the microseconds of the first part (loading
 * and looking up: where a preload that loads itself lazily pays) and of the second.
 * Usage: startup_cuda */
#include <dlfcn.h>
#include <stdio.h>
#include <time.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

typedef int (*init_t)(unsigned);
typedef int (*get_t)(int *, int);
typedef int (*ctx_t)(void **, unsigned, int);

int main(void) {
    double t0 = now_us();
    void *h = dlopen("libcuda.so.1", RTLD_NOW);
    if (!h) { fprintf(stderr, "no libcuda.so.1\n"); return 2; }
    init_t init = (init_t)dlsym(h, "cuInit");
    get_t get = (get_t)dlsym(h, "cuDeviceGet");
    ctx_t ctx = (ctx_t)dlsym(h, "cuCtxCreate_v2");
    if (!init || !get || !ctx) { fprintf(stderr, "missing entry points\n"); return 2; }
    double t1 = now_us();
    int d;
    void *c;
    int r = init(0);
    if (!r) r = get(&d, 0);
    if (!r) r = ctx(&c, 0, d);
    double t2 = now_us();
    if (r) { fprintf(stderr, "CUDA error %d\n", r); return 1; }
    printf("%.1f %.1f\n", t1 - t0, t2 - t1);
    return 0;
}
