/* A C client of the CUDA driver API linked with -lcuda: devices, contexts, every kind of
 * allocation, copies, and the memory info that must follow them. Prints what it saw as
 * `key value` lines for the test to compare; exits non-zero at the first failed check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void *CUcontext, *CUstream, *CUevent, *CUmodule, *CUfunction, *CUarray, *CUmemoryPool;
typedef unsigned long long CUmemGenericAllocationHandle;
typedef struct { char bytes[16]; } CUuuid;
typedef struct { int type, id; } CUmemLocation;
typedef struct {
    int type, requestedHandleTypes;
    CUmemLocation location;
    void *win32HandleMetaData;
    unsigned char compressionType, gpuDirectRDMACapable;
    unsigned short usage;
    unsigned char reserved[4];
} CUmemAllocationProp;
typedef struct { CUmemLocation location; int flags; } CUmemAccessDesc;
typedef struct {
    int allocType, handleTypes;
    CUmemLocation location;
    void *win32SecurityAttributes;
    size_t maxSize;
    unsigned short usage;
    unsigned char reserved[54];
} CUmemPoolProps;
typedef struct { size_t Width, Height; int Format; unsigned NumChannels; } CUDA_ARRAY_DESCRIPTOR;
typedef struct { size_t Width, Height, Depth; int Format; unsigned NumChannels, Flags; } CUDA_ARRAY3D_DESCRIPTOR;

CUresult cuInit(unsigned);
CUresult cuDriverGetVersion(int *);
CUresult cuDeviceGetCount(int *);
CUresult cuDeviceGet(CUdevice *, int);
CUresult cuDeviceGetName(char *, int, CUdevice);
CUresult cuDeviceGetUuid_v2(CUuuid *, CUdevice);
CUresult cuDeviceTotalMem_v2(size_t *, CUdevice);
CUresult cuDeviceGetAttribute(int *, int, CUdevice);
CUresult cuDeviceGetPCIBusId(char *, int, CUdevice);
CUresult cuDeviceGetByPCIBusId(CUdevice *, const char *);
CUresult cuDeviceComputeCapability(int *, int *, CUdevice);
CUresult cuDevicePrimaryCtxRetain(CUcontext *, CUdevice);
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice);
CUresult cuDevicePrimaryCtxGetState(CUdevice, unsigned *, int *);
CUresult cuDevicePrimaryCtxSetFlags(CUdevice, unsigned);
CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice, unsigned);
CUresult cuCtxCreate_v2(CUcontext *, unsigned, CUdevice);
CUresult cuCtxDestroy_v2(CUcontext);
CUresult cuCtxPushCurrent_v2(CUcontext);
CUresult cuCtxPopCurrent_v2(CUcontext *);
CUresult cuCtxSetCurrent(CUcontext);
CUresult cuCtxGetCurrent(CUcontext *);
CUresult cuCtxGetDevice(CUdevice *);
CUresult cuCtxSynchronize(void);
CUresult cuCtxGetApiVersion(CUcontext, unsigned *);
CUresult cuMemGetInfo_v2(size_t *, size_t *);
CUresult cuMemAlloc_v2(CUdeviceptr *, size_t);
CUresult cuMemFree_v2(CUdeviceptr);
CUresult cuMemAllocPitch_v2(CUdeviceptr *, size_t *, size_t, size_t, unsigned);
CUresult cuMemAllocManaged(CUdeviceptr *, size_t, unsigned);
CUresult cuMemAllocHost_v2(void **, size_t);
CUresult cuMemHostAlloc(void **, size_t, unsigned);
CUresult cuMemFreeHost(void *);
CUresult cuMemGetAddressRange_v2(CUdeviceptr *, size_t *, CUdeviceptr);
CUresult cuMemcpyHtoD_v2(CUdeviceptr, const void *, size_t);
CUresult cuMemcpyDtoH_v2(void *, CUdeviceptr, size_t);
CUresult cuMemcpyDtoD_v2(CUdeviceptr, CUdeviceptr, size_t);
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr, const void *, size_t, CUstream);
CUresult cuMemcpy(CUdeviceptr, CUdeviceptr, size_t);
CUresult cuMemsetD8_v2(CUdeviceptr, unsigned char, size_t);
CUresult cuMemsetD32_v2(CUdeviceptr, unsigned, size_t);
CUresult cuStreamCreate(CUstream *, unsigned);
CUresult cuStreamSynchronize(CUstream);
CUresult cuStreamDestroy_v2(CUstream);
CUresult cuEventCreate(CUevent *, unsigned);
CUresult cuEventRecord(CUevent, CUstream);
CUresult cuEventSynchronize(CUevent);
CUresult cuEventDestroy_v2(CUevent);
CUresult cuMemAllocAsync(CUdeviceptr *, size_t, CUstream);
CUresult cuMemFreeAsync(CUdeviceptr, CUstream);
CUresult cuMemPoolCreate(CUmemoryPool *, const CUmemPoolProps *);
CUresult cuMemPoolDestroy(CUmemoryPool);
CUresult cuDeviceGetDefaultMemPool(CUmemoryPool *, CUdevice);
CUresult cuDeviceGetMemPool(CUmemoryPool *, CUdevice);
CUresult cuMemAllocFromPoolAsync(CUdeviceptr *, size_t, CUmemoryPool, CUstream);
CUresult cuMemGetAllocationGranularity(size_t *, const CUmemAllocationProp *, int);
CUresult cuMemCreate(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long);
CUresult cuMemRelease(CUmemGenericAllocationHandle);
CUresult cuMemAddressReserve(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
CUresult cuMemAddressFree(CUdeviceptr, size_t);
CUresult cuMemMap(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long);
CUresult cuMemUnmap(CUdeviceptr, size_t);
CUresult cuMemSetAccess(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);
CUresult cuMemGetAllocationPropertiesFromHandle(CUmemAllocationProp *, CUmemGenericAllocationHandle);
CUresult cuArrayCreate_v2(CUarray *, const CUDA_ARRAY_DESCRIPTOR *);
CUresult cuArray3DCreate_v2(CUarray *, const CUDA_ARRAY3D_DESCRIPTOR *);
CUresult cuArrayDestroy(CUarray);
CUresult cuMipmappedArrayCreate(CUarray *, const CUDA_ARRAY3D_DESCRIPTOR *, unsigned);
CUresult cuMipmappedArrayDestroy(CUarray);
/* The pre-3.2 ABI: 32-bit device pointers and sizes. */
CUresult cuMemAlloc(unsigned *, unsigned);
CUresult cuMemFree(unsigned);
CUresult cuMemcpyHtoD(unsigned, const void *, unsigned);
CUresult cuMemcpyDtoH(void *, unsigned, unsigned);
CUresult cuMemsetD8(unsigned, unsigned char, unsigned);
CUresult cuMemGetInfo(unsigned *, unsigned *);
typedef struct { unsigned Width, Height; int Format; unsigned NumChannels; } CUDA_ARRAY_DESCRIPTOR_v1;
CUresult cuArrayCreate(CUarray *, const CUDA_ARRAY_DESCRIPTOR_v1 *);
CUresult cuModuleLoadData(CUmodule *, const void *);
CUresult cuLaunchKernel(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                        unsigned, CUstream, void **, void **);
CUresult cuGetExportTable(const void **, const CUuuid *);
CUresult cuGetErrorName(CUresult, const char **);
CUresult cuGetErrorString(CUresult, const char **);


#define OK(call) EXPECT(call, 0)
#define EXPECT(call, want)                                                                   \
    do {                                                                                     \
        CUresult r_ = (call);                                                                \
        if (r_ != (want)) {                                                                  \
            fprintf(stderr, "%s:%d: %s returned %d, expected %d\n", __FILE__, __LINE__, #call, \
                    r_, (want));                                                             \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)
#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);         \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

#define MiB (1024ull * 1024ull)

static size_t free_now(void) {
    size_t f, t;
    OK(cuMemGetInfo_v2(&f, &t));
    return f;
}

static void devices(void) {
    int n;
    OK(cuDeviceGetCount(&n));
    printf("count %d\n", n);
    for (int i = 0; i < n; i++) {
        CUdevice d;
        char name[128], bus[32];
        CUuuid u;
        size_t total;
        int major, minor, sms, warp, tpb, pci_bus, pci_dom, uva, managed, pools, vmm, cc_major;
        OK(cuDeviceGet(&d, i));
        CHECK(d == i);
        OK(cuDeviceGetName(name, sizeof name, d));
        OK(cuDeviceGetUuid_v2(&u, d));
        OK(cuDeviceTotalMem_v2(&total, d));
        OK(cuDeviceGetPCIBusId(bus, sizeof bus, d));
        OK(cuDeviceComputeCapability(&major, &minor, d));
        OK(cuDeviceGetAttribute(&cc_major, 75, d));
        OK(cuDeviceGetAttribute(&sms, 16, d));
        OK(cuDeviceGetAttribute(&warp, 10, d));
        OK(cuDeviceGetAttribute(&tpb, 1, d));
        OK(cuDeviceGetAttribute(&pci_bus, 33, d));
        OK(cuDeviceGetAttribute(&pci_dom, 50, d));
        OK(cuDeviceGetAttribute(&uva, 41, d));
        OK(cuDeviceGetAttribute(&managed, 83, d));
        OK(cuDeviceGetAttribute(&pools, 115, d));
        OK(cuDeviceGetAttribute(&vmm, 102, d));
        CHECK(cc_major == major);
        unsigned dom, b;
        CHECK(sscanf(bus, "%x:%x", &dom, &b) == 2 && (int)b == pci_bus && (int)dom == pci_dom);
        CUdevice back;
        OK(cuDeviceGetByPCIBusId(&back, bus));
        CHECK(back == d);
        const unsigned char *x = (const unsigned char *)u.bytes;
        printf("device %d name=%s uuid=GPU-", i, name);
        for (int k = 0; k < 16; k++)
            printf("%02x%s", x[k], (k == 3 || k == 5 || k == 7 || k == 9) ? "-" : "");
        printf(" bus=%s total=%zu cc=%d.%d sms=%d warp=%d tpb=%d uva=%d managed=%d pools=%d vmm=%d\n",
               bus, total, major, minor, sms, warp, tpb, uva, managed, pools, vmm);
    }
    int v;
    CUdevice d;
    EXPECT(cuDeviceGet(&d, n), 101);
    EXPECT(cuDeviceGetAttribute(&v, 0, 0), 1);
    EXPECT(cuDeviceGetAttribute(&v, 100000, 0), 1);
    EXPECT(cuDeviceGetAttribute(&v, 16, n), 101);
    EXPECT(cuDeviceGetByPCIBusId(&d, "0000:ff:00.0"), 1);
}

static void contexts(void) {
    CUcontext cur, primary, again, mine, popped;
    unsigned flags, api;
    int active;
    CUdevice d;
    OK(cuCtxGetCurrent(&cur));
    CHECK(cur == NULL);
    EXPECT(cuCtxGetDevice(&d), 201);
    EXPECT(cuMemGetInfo_v2(NULL, NULL), 201);
    OK(cuDevicePrimaryCtxGetState(0, &flags, &active));
    CHECK(active == 0);
    OK(cuDevicePrimaryCtxRetain(&primary, 0));
    OK(cuDevicePrimaryCtxRetain(&again, 0));
    CHECK(primary == again);
    OK(cuDevicePrimaryCtxGetState(0, &flags, &active));
    CHECK(active == 1);
    /* Only _v2 may change an active primary context's flags. */
    EXPECT(cuDevicePrimaryCtxSetFlags(0, 4), 708);
    OK(cuDevicePrimaryCtxSetFlags_v2(0, 4));
    OK(cuDevicePrimaryCtxRelease_v2(0));
    OK(cuCtxSetCurrent(primary));
    OK(cuCtxGetCurrent(&cur));
    CHECK(cur == primary);
    OK(cuCtxGetApiVersion(NULL, &api));
    CHECK(api == 3020);
    int n;
    OK(cuDeviceGetCount(&n));
    if (n > 1) {
        /* A created context is pushed; popping returns to the primary one. */
        OK(cuCtxCreate_v2(&mine, 0, 1));
        OK(cuCtxGetDevice(&d));
        CHECK(d == 1);
        OK(cuCtxPopCurrent_v2(&popped));
        CHECK(popped == mine);
        OK(cuCtxGetCurrent(&cur));
        CHECK(cur == primary);
        OK(cuCtxPushCurrent_v2(mine));
        CUdeviceptr p;
        OK(cuMemAlloc_v2(&p, MiB));
        /* Destroying the current context pops it and frees what it owns. */
        OK(cuCtxDestroy_v2(mine));
        OK(cuCtxGetCurrent(&cur));
        CHECK(cur == primary);
        EXPECT(cuCtxPushCurrent_v2(mine), 201);
        EXPECT(cuCtxDestroy_v2(primary), 201);
    }
    OK(cuCtxGetDevice(&d));
    CHECK(d == 0);
    OK(cuCtxSynchronize());
    size_t f, t;
    OK(cuMemGetInfo_v2(&f, &t));
    printf("context used=%zu\n", t - f);
}

static void memory(void) {
    size_t f0 = free_now();
    CUdeviceptr p, q, base;
    size_t size;

    OK(cuMemAlloc_v2(&p, 64 * MiB));
    CHECK(free_now() == f0 - 64 * MiB);
    OK(cuMemGetAddressRange_v2(&base, &size, p + 12345));
    CHECK(base == p && size == 64 * MiB);

    /* Copies round-trip bytes, and memsets fill. */
    unsigned char src[4096], dst[4096];
    for (int i = 0; i < 4096; i++) src[i] = (unsigned char)(i * 7);
    OK(cuMemcpyHtoD_v2(p, src, sizeof src));
    OK(cuMemAlloc_v2(&q, 4096));
    OK(cuMemcpyDtoD_v2(q, p, 4096));
    memset(dst, 0, sizeof dst);
    OK(cuMemcpyDtoH_v2(dst, q, sizeof dst));
    CHECK(memcmp(src, dst, sizeof src) == 0);
    OK(cuMemsetD8_v2(q, 0xab, 4096));
    OK(cuMemcpy((CUdeviceptr)dst, q, 16));
    CHECK(dst[0] == 0xab && dst[15] == 0xab);
    OK(cuMemsetD32_v2(q, 0x01020304, 1024));
    unsigned word;
    OK(cuMemcpyDtoH_v2(&word, q + 4092, 4));
    CHECK(word == 0x01020304);
    CUstream s;
    CUevent e;
    OK(cuStreamCreate(&s, 0));
    OK(cuMemcpyHtoDAsync_v2(q, src, 64, s));
    OK(cuEventCreate(&e, 0));
    OK(cuEventRecord(e, s));
    OK(cuEventSynchronize(e));
    OK(cuStreamSynchronize(s));
    OK(cuEventDestroy_v2(e));
    /* Copies out of range or from unknown pointers fail instead of crashing. */
    EXPECT(cuMemcpyDtoH_v2(dst, q + 4000, 200), 1);
    EXPECT(cuMemcpyHtoD_v2(0x1000, src, 16), 1);
    OK(cuMemFree_v2(q));
    OK(cuMemFree_v2(p));
    EXPECT(cuMemFree_v2(p), 1);
    EXPECT(cuMemAlloc_v2(&p, 0), 1);
    CHECK(free_now() == f0);
    printf("linear ok\n");

    size_t pitch;
    OK(cuMemAllocPitch_v2(&p, &pitch, 1000, 100, 4));
    CHECK(pitch >= 1000 && pitch % 512 == 0);
    CHECK(free_now() == f0 - pitch * 100);
    OK(cuMemFree_v2(p));
    OK(cuMemAllocManaged(&p, 32 * MiB, 1));
    CHECK(free_now() == f0 - 32 * MiB);
    OK(cuMemFree_v2(p));

    /* Page-locked host memory is not device memory. */
    void *h1, *h2;
    OK(cuMemAllocHost_v2(&h1, 16 * MiB));
    OK(cuMemHostAlloc(&h2, 16 * MiB, 2));
    CHECK(free_now() == f0);
    OK(cuMemFreeHost(h1));
    OK(cuMemFreeHost(h2));
    printf("pitch managed host ok\n");

    /* Stream-ordered allocation, from the device's pool and from a pool of our own. */
    CUmemoryPool def, cur_pool, pool;
    OK(cuDeviceGetDefaultMemPool(&def, 0));
    OK(cuDeviceGetMemPool(&cur_pool, 0));
    CHECK(def == cur_pool);
    OK(cuMemAllocAsync(&p, 8 * MiB, s));
    CHECK(free_now() == f0 - 8 * MiB);
    OK(cuMemFreeAsync(p, s));
    CUmemPoolProps pp;
    memset(&pp, 0, sizeof pp);
    pp.allocType = 1;
    pp.location.type = 1;
    pp.location.id = 0;
    OK(cuMemPoolCreate(&pool, &pp));
    OK(cuMemAllocFromPoolAsync(&p, 4 * MiB, pool, NULL));
    CHECK(free_now() == f0 - 4 * MiB);
    OK(cuMemPoolDestroy(pool));
    CHECK(free_now() == f0);
    pp.location.type = 2;
    EXPECT(cuMemPoolCreate(&pool, &pp), 1);
    OK(cuStreamSynchronize(s));
    OK(cuStreamDestroy_v2(s));
    printf("pools ok\n");

    /* Virtual memory management. */
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = 1;
    prop.location.type = 1;
    prop.location.id = 0;
    size_t gran;
    OK(cuMemGetAllocationGranularity(&gran, &prop, 0));
    CHECK(gran == 2 * MiB);
    CUmemGenericAllocationHandle hnd;
    EXPECT(cuMemCreate(&hnd, gran + 1, &prop, 0), 1);
    OK(cuMemCreate(&hnd, 8 * gran, &prop, 0));
    CHECK(free_now() == f0 - 8 * gran);
    CUmemAllocationProp back;
    OK(cuMemGetAllocationPropertiesFromHandle(&back, hnd));
    CHECK(back.type == 1 && back.location.id == 0);
    CUdeviceptr va;
    OK(cuMemAddressReserve(&va, 16 * gran, 0, 0, 0));
    OK(cuMemMap(va, 8 * gran, 0, hnd, 0));
    /* Mapped but not yet accessible: copies are refused. */
    EXPECT(cuMemcpyHtoD_v2(va, src, 16), 1);
    CUmemAccessDesc acc = {{1, 0}, 3};
    OK(cuMemSetAccess(va, 8 * gran, &acc, 1));
    OK(cuMemcpyHtoD_v2(va + gran, src, sizeof src));
    memset(dst, 0, sizeof dst);
    OK(cuMemcpyDtoH_v2(dst, va + gran, sizeof dst));
    CHECK(memcmp(src, dst, sizeof src) == 0);
    OK(cuMemGetAddressRange_v2(&base, &size, va + 3));
    CHECK(base == va && size == 8 * gran);
    /* The memory stays until the handle is released and every mapping is gone. */
    OK(cuMemRelease(hnd));
    CHECK(free_now() == f0 - 8 * gran);
    EXPECT(cuMemRelease(hnd), 1);
    OK(cuMemUnmap(va, 8 * gran));
    CHECK(free_now() == f0);
    OK(cuMemAddressFree(va, 16 * gran));
    prop.location.type = 2;
    EXPECT(cuMemCreate(&hnd, gran, &prop, 0), 1);
    prop.location.type = 1;
    prop.type = 0;
    EXPECT(cuMemCreate(&hnd, gran, &prop, 0), 1);
    printf("vmm ok\n");

    /* Arrays: width * height * depth * bytes per channel * channels. */
    CUarray arr, arr3, mip;
    CUDA_ARRAY_DESCRIPTOR ad = {1024, 512, 0x20, 4}; /* FLOAT x4 */
    OK(cuArrayCreate_v2(&arr, &ad));
    CHECK(free_now() == f0 - 1024ull * 512 * 4 * 4);
    OK(cuArrayDestroy(arr));
    CUDA_ARRAY3D_DESCRIPTOR a3 = {256, 256, 16, 0x02, 2, 0}; /* UNSIGNED_INT16 x2 */
    OK(cuArray3DCreate_v2(&arr3, &a3));
    CHECK(free_now() == f0 - 256ull * 256 * 16 * 2 * 2);
    OK(cuMipmappedArrayCreate(&mip, &a3, 4));
    CHECK(free_now() == f0 - 2 * (256ull * 256 * 16 * 2 * 2));
    OK(cuMipmappedArrayDestroy(mip));
    OK(cuArrayDestroy(arr3));
    EXPECT(cuArrayDestroy(arr3), 400);
    ad.NumChannels = 3;
    EXPECT(cuArrayCreate_v2(&arr, &ad), 1);
    CHECK(free_now() == f0);
    printf("arrays ok\n");

    unsigned p32, free32, total32;
    OK(cuMemAlloc(&p32, 4096));
    CHECK(free_now() == f0 - 4096);
    OK(cuMemcpyHtoD(p32, src, 4096));
    OK(cuMemsetD8(p32, 0x5a, 16));
    OK(cuMemcpyDtoH(dst, p32, 4096));
    CHECK(dst[15] == 0x5a && dst[16] == src[16] && dst[4095] == src[4095]);
    OK(cuMemFree(p32));
    OK(cuMemGetInfo(&free32, &total32));
    CHECK(total32 == 0xffffffffu); /* clamped */
    CUDA_ARRAY_DESCRIPTOR_v1 ad1 = {64, 64, 0x01, 1};
    OK(cuArrayCreate(&arr, &ad1));
    CHECK(free_now() == f0 - 64 * 64);
    OK(cuArrayDestroy(arr));
    CHECK(free_now() == f0);
    printf("v1 abi ok\n");
}

static void no_gpu_code(void) {
    CUmodule m;
    const void *table;
    CUuuid id = {{0}};
    EXPECT(cuModuleLoadData(&m, "not a cubin"), 801);
    EXPECT(cuLaunchKernel(NULL, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL), 400);
    EXPECT(cuGetExportTable(&table, &id), 801);
    const char *s;
    OK(cuGetErrorName(2, &s));
    CHECK(strcmp(s, "CUDA_ERROR_OUT_OF_MEMORY") == 0);
    OK(cuGetErrorString(100, &s));
    printf("error 100 %s\n", s);
    EXPECT(cuGetErrorName(12345, &s), 1);
}

int main(void) {
    int v, n;
    OK(cuDriverGetVersion(&v));
    printf("driver %d\n", v);
    EXPECT(cuDeviceGetCount(&n), 3); /* before cuInit */
    EXPECT(cuInit(1), 1);
    OK(cuInit(0));
    devices();
    contexts();
    memory();
    no_gpu_code();
    /* Releasing the last reference to the primary context frees what it holds. */
    CUdeviceptr p;
    OK(cuMemAlloc_v2(&p, 1 * MiB));
    OK(cuDevicePrimaryCtxRelease_v2(0));
    EXPECT(cuMemAlloc_v2(&p, 1 * MiB), 201);
    printf("done\n");
    return 0;
}
