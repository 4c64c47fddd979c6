/* Two roles for cross-process checks:
 *   cuda_hold <ordinal> <bytes>  allocates the bytes, prints `held`, and waits to be killed;
 *   cuda_hold info               prints `device <ordinal> free <bytes> total <bytes>` for all. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int CUresult;
typedef void *CUcontext;
CUresult cuInit(unsigned);
CUresult cuDeviceGetCount(int *);
CUresult cuDevicePrimaryCtxRetain(CUcontext *, int);
CUresult cuCtxSetCurrent(CUcontext);
CUresult cuMemGetInfo_v2(size_t *, size_t *);
CUresult cuMemAlloc_v2(unsigned long long *, size_t);

int main(int argc, char **argv) {
    CUcontext ctx;
    if (cuInit(0) != 0)
        return 1;
    if (argc == 2 && strcmp(argv[1], "info") == 0) {
        int n;
        if (cuDeviceGetCount(&n))
            return 1;
        for (int i = 0; i < n; i++) {
            size_t f, t;
            if (cuDevicePrimaryCtxRetain(&ctx, i) || cuCtxSetCurrent(ctx) || cuMemGetInfo_v2(&f, &t))
                return 1;
            printf("device %d free %zu total %zu\n", i, f, t);
        }
        return 0;
    }
    if (argc != 3)
        return 2;
    unsigned long long p;
    if (cuDevicePrimaryCtxRetain(&ctx, atoi(argv[1])) || cuCtxSetCurrent(ctx))
        return 1;
    CUresult r = cuMemAlloc_v2(&p, strtoull(argv[2], NULL, 0));
    if (r != 0) {
        printf("error %d\n", r);
        return 1;
    }
    printf("held\n");
    fflush(stdout);
    for (;;)
        pause();
}
