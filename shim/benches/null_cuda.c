/* A driver that does nothing, for measuring what the shim itself adds: one device whose UUID is
 * $NULL_CUDA_UUID (so the shim maps it to an environment's GPU), allocations that hand out
 * addresses without memory. Built as libcuda.so.1 by scripts/bench-shim.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { unsigned char bytes[16]; } CUuuid;
static unsigned long long next = 1ull << 40;
static __thread void *current;

int cuInit(unsigned f) { (void)f; return 0; }
int cuDriverGetVersion(int *v) { *v = 12020; return 0; }
int cuDeviceGetCount(int *n) { *n = 1; return 0; }
int cuDeviceGet(int *d, int o) { if (o != 0) return 101; *d = 0; return 0; }
static int uuid(CUuuid *u, int d) {
    const char *s = getenv("NULL_CUDA_UUID");
    if (d != 0 || !s || strlen(s) < 40) return 101;
    s += 4; /* GPU- */
    for (int i = 0; i < 16; i++) {
        while (*s == '-') s++;
        unsigned x; sscanf(s, "%2x", &x); u->bytes[i] = (unsigned char)x; s += 2;
    }
    return 0;
}
int cuDeviceGetUuid(CUuuid *u, int d) { return uuid(u, d); }
int cuDeviceGetUuid_v2(CUuuid *u, int d) { return uuid(u, d); }
int cuDeviceTotalMem_v2(size_t *b, int d) { (void)d; *b = 80ull << 30; return 0; }
int cuDevicePrimaryCtxRetain(void **c, int d) { (void)d; *c = (void *)0x1000; return 0; }
int cuCtxSetCurrent(void *c) { current = c; return 0; }
int cuCtxGetCurrent(void **c) { *c = current; return 0; }
int cuCtxGetDevice(int *d) { if (!current) return 201; *d = 0; return 0; }
int cuMemAlloc_v2(unsigned long long *p, size_t n) {
    *p = __atomic_fetch_add(&next, (n + 511) & ~511ull, __ATOMIC_RELAXED);
    return 0;
}
int cuMemFree_v2(unsigned long long p) { (void)p; return 0; }
int cuMemGetInfo_v2(size_t *f, size_t *t) { *f = 80ull << 30; *t = 80ull << 30; return 0; }
