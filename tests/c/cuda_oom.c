/* Device memory runs out at the device's size (run with GENV_SIM_GPU_MEMORY=1gi), for every
 * kind of allocation, and comes back when freed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef void *CUcontext, *CUarray;
typedef struct { int type, id; } CUmemLocation;
typedef struct {
    int type, requestedHandleTypes;
    CUmemLocation location;
    void *win32HandleMetaData;
    unsigned char compressionType, gpuDirectRDMACapable;
    unsigned short usage;
    unsigned char reserved[4];
} CUmemAllocationProp;
typedef struct { size_t Width, Height; int Format; unsigned NumChannels; } CUDA_ARRAY_DESCRIPTOR;

CUresult cuInit(unsigned);
CUresult cuDevicePrimaryCtxRetain(CUcontext *, int);
CUresult cuCtxSetCurrent(CUcontext);
CUresult cuMemGetInfo_v2(size_t *, size_t *);
CUresult cuMemAlloc_v2(CUdeviceptr *, size_t);
CUresult cuMemFree_v2(CUdeviceptr);
CUresult cuMemAllocPitch_v2(CUdeviceptr *, size_t *, size_t, size_t, unsigned);
CUresult cuMemAllocManaged(CUdeviceptr *, size_t, unsigned);
CUresult cuMemAllocAsync(CUdeviceptr *, size_t, void *);
CUresult cuMemHostAlloc(void **, size_t, unsigned);
CUresult cuMemFreeHost(void *);
CUresult cuMemCreate(unsigned long long *, size_t, const CUmemAllocationProp *, unsigned long long);
CUresult cuArrayCreate_v2(CUarray *, const CUDA_ARRAY_DESCRIPTOR *);

#define MiB (1024ull * 1024ull)
#define EXPECT(call, want)                                                                   \
    do {                                                                                     \
        CUresult r_ = (call);                                                                \
        if (r_ != (want)) {                                                                  \
            fprintf(stderr, "%s:%d: %s returned %d, expected %d\n", __FILE__, __LINE__, #call, \
                    r_, (want));                                                             \
            return 1;                                                                        \
        }                                                                                    \
    } while (0)

int main(void) {
    CUcontext ctx;
    CUdeviceptr big, p;
    size_t free_, total, pitch;
    EXPECT(cuInit(0), 0);
    EXPECT(cuDevicePrimaryCtxRetain(&ctx, 0), 0);
    EXPECT(cuCtxSetCurrent(ctx), 0);
    EXPECT(cuMemGetInfo_v2(&free_, &total), 0);
    printf("total %zu free %zu\n", total, free_);
    EXPECT(cuMemAlloc_v2(&big, 768 * MiB), 0);
    /* 256 MiB left: every kind of device allocation that does not fit is refused. */
    EXPECT(cuMemAlloc_v2(&p, 512 * MiB), 2);
    EXPECT(cuMemAllocPitch_v2(&p, &pitch, 512 * 1024, 1024, 4), 2);
    EXPECT(cuMemAllocManaged(&p, 512 * MiB, 1), 2);
    EXPECT(cuMemAllocAsync(&p, 512 * MiB, NULL), 2);
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = 1;
    prop.location.type = 1;
    unsigned long long h;
    EXPECT(cuMemCreate(&h, 512 * MiB, &prop, 0), 2);
    CUarray a;
    CUDA_ARRAY_DESCRIPTOR ad = {16384, 8192, 0x20, 1}; /* 512 MiB of floats */
    EXPECT(cuArrayCreate_v2(&a, &ad), 2);
    /* Host memory is not device memory. */
    void *host;
    EXPECT(cuMemHostAlloc(&host, 512 * MiB, 0), 0);
    EXPECT(cuMemFreeHost(host), 0);
    /* What is left still fits, to the byte. */
    EXPECT(cuMemAlloc_v2(&p, 256 * MiB), 0);
    EXPECT(cuMemGetInfo_v2(&free_, &total), 0);
    printf("full free %zu\n", free_);
    EXPECT(cuMemAlloc_v2(&h, 1), 2);
    EXPECT(cuMemFree_v2(p), 0);
    EXPECT(cuMemFree_v2(big), 0);
    EXPECT(cuMemAlloc_v2(&p, total), 0);
    EXPECT(cuMemFree_v2(p), 0);
    EXPECT(cuMemAlloc_v2(&p, total + 1), 2);
    printf("oom ok\n");
    return 0;
}
