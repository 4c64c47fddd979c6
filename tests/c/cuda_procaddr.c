/* cuGetProcAddress(_v2) as clients use it: a plain base name plus the CUDA version the caller
 * was built for picks the ABI variant, and the flags pick per-thread-default-stream variants.
 * Every answer must be the very function a dlsym of the variant's name returns. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
CUresult cuInit(unsigned);
CUresult cuGetProcAddress(const char *, void **, int, unsigned long long);
CUresult cuGetProcAddress_v2(const char *, void **, int, unsigned long long, int *);

static void *lib;
static int failures;

/* Asks for `name` at `version` with `flags` and expects the function exported as `want`. */
static void expect(const char *name, int version, unsigned long long flags, const char *want) {
    void *p = (void *)1, *p1 = (void *)1;
    int status = -1;
    CUresult r = cuGetProcAddress_v2(name, &p, version, flags, &status);
    CUresult r1 = cuGetProcAddress(name, &p1, version, flags);
    void *sym = dlsym(lib, want);
    if (r != 0 || status != 0 || sym == NULL || p != sym || r1 != 0 || p1 != sym) {
        printf("FAIL %s %d %llu: want %s, got r=%d status=%d p=%p (dlsym %p) v1 r=%d p=%p\n", name,
               version, flags, want, r, status, p, sym, r1, p1);
        failures++;
    } else {
        printf("ok %s %d %llu -> %s\n", name, version, flags, want);
    }
}

/* Expects NOT_FOUND (500) with this symbol status and a NULL pointer. */
static void expect_missing(const char *name, int version, unsigned long long flags, int want_status) {
    void *p = (void *)1;
    int status = -1;
    CUresult r = cuGetProcAddress_v2(name, &p, version, flags, &status);
    if (r != 500 || status != want_status || p != NULL) {
        printf("FAIL missing %s %d: r=%d status=%d p=%p\n", name, version, r, status, p);
        failures++;
    } else {
        printf("ok missing %s %d -> status %d\n", name, version, status);
    }
}

int main(void) {
    lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (!lib) {
        printf("FAIL libcuda.so.1 is not loaded: %s\n", dlerror());
        return 1;
    }
    /* Works before cuInit: the runtime resolves cuInit itself this way. */
    expect("cuInit", 2000, 0, "cuInit");
    if (cuInit(0) != 0) {
        printf("FAIL cuInit\n");
        return 1;
    }
    expect("cuMemAlloc", 2000, 0, "cuMemAlloc");
    expect("cuMemAlloc", 3020, 0, "cuMemAlloc_v2");
    expect("cuMemAlloc", 12000, 1, "cuMemAlloc_v2");
    expect("cuMemFree", 3020, 0, "cuMemFree_v2");
    expect("cuMemGetInfo", 3020, 0, "cuMemGetInfo_v2");
    expect("cuMemGetInfo", 2000, 0, "cuMemGetInfo");
    expect("cuDeviceTotalMem", 3020, 0, "cuDeviceTotalMem_v2");
    expect("cuMemcpyHtoD", 3020, 0, "cuMemcpyHtoD_v2");
    expect("cuMemcpyDtoH", 3020, 0, "cuMemcpyDtoH_v2");
    expect("cuCtxCreate", 2000, 0, "cuCtxCreate");
    expect("cuCtxCreate", 3020, 0, "cuCtxCreate_v2");
    expect("cuCtxCreate", 11040, 0, "cuCtxCreate_v3");
    expect("cuCtxCreate", 12050, 0, "cuCtxCreate_v4");
    expect("cuCtxDestroy", 4000, 0, "cuCtxDestroy_v2");
    expect("cuCtxPushCurrent", 4000, 0, "cuCtxPushCurrent_v2");
    expect("cuCtxPopCurrent", 4000, 0, "cuCtxPopCurrent_v2");
    expect("cuDevicePrimaryCtxRelease", 7000, 0, "cuDevicePrimaryCtxRelease");
    expect("cuDevicePrimaryCtxRelease", 11000, 0, "cuDevicePrimaryCtxRelease_v2");
    expect("cuDevicePrimaryCtxReset", 11000, 0, "cuDevicePrimaryCtxReset_v2");
    expect("cuDevicePrimaryCtxSetFlags", 11000, 0, "cuDevicePrimaryCtxSetFlags_v2");
    expect("cuDeviceGetUuid", 9020, 0, "cuDeviceGetUuid");
    expect("cuDeviceGetUuid", 11040, 0, "cuDeviceGetUuid_v2");
    expect("cuGetProcAddress", 11030, 0, "cuGetProcAddress");
    expect("cuGetProcAddress", 12000, 0, "cuGetProcAddress_v2");
    /* Per-thread default stream: _ptds without a stream argument, _ptsz with one. */
    expect("cuMemcpyHtoDAsync", 7000, 2, "cuMemcpyHtoDAsync_v2_ptsz");
    expect("cuMemcpyHtoDAsync", 7000, 1, "cuMemcpyHtoDAsync_v2");
    expect("cuMemcpyHtoDAsync", 3020, 0, "cuMemcpyHtoDAsync_v2");
    expect("cuMemcpyHtoD", 7000, 2, "cuMemcpyHtoD_v2_ptds");
    expect("cuMemcpy", 7000, 2, "cuMemcpy_ptds");
    expect("cuMemcpy", 4000, 0, "cuMemcpy");
    expect("cuMemsetD8", 7000, 2, "cuMemsetD8_v2_ptds");
    expect("cuMemAllocAsync", 11020, 2, "cuMemAllocAsync_ptsz");
    expect("cuMemAllocAsync", 11020, 0, "cuMemAllocAsync");
    expect("cuMemFreeAsync", 11020, 2, "cuMemFreeAsync_ptsz");
    expect("cuMemAllocFromPoolAsync", 11020, 2, "cuMemAllocFromPoolAsync_ptsz");
    expect("cuStreamSynchronize", 7000, 2, "cuStreamSynchronize_ptsz");
    expect("cuLaunchKernel", 7000, 2, "cuLaunchKernel_ptsz");
    /* Functions without per-thread variants answer the same under every flag. */
    expect("cuMemAlloc", 3020, 2, "cuMemAlloc_v2");

    expect_missing("cuNoSuchFunction", 12000, 0, 1);
    expect_missing("cuMemAlloc_v2", 12000, 0, 1); /* the plain name is the key */
    expect_missing("cuMemAllocAsync", 11010, 0, 2);
    expect_missing("cuMemAlloc", 1000, 0, 2);
    /* A real entry point this driver does not implement. */
    expect_missing("cuGraphCreate", 12000, 0, 1);

    void *p;
    if (cuGetProcAddress_v2("cuInit", NULL, 12000, 0, NULL) != 1 ||
        cuGetProcAddress_v2(NULL, &p, 12000, 0, NULL) != 1 ||
        cuGetProcAddress_v2("cuInit", &p, 12000, 7, NULL) != 1) {
        printf("FAIL invalid arguments are not refused\n");
        failures++;
    }
    /* The answer is callable. */
    CUresult (*get_version)(int *);
    int v = 0;
    if (cuGetProcAddress_v2("cuDriverGetVersion", (void **)&get_version, 2020, 0, NULL) != 0 ||
        get_version(&v) != 0 || v != 12020) {
        printf("FAIL cuDriverGetVersion through cuGetProcAddress: %d\n", v);
        failures++;
    }
    printf("failures %d\n", failures);
    return failures != 0;
}
