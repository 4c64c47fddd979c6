/* A CUDA driver client for the shim's tests. It reaches the driver in one of the three ways
 * real programs do, chosen by the first argument:
 *   link   - the symbols this program is linked against (-lcuda);
 *   dlsym  - dlopen("libcuda.so.1") and dlsym on that handle (the CUDA runtime, nvidia tools);
 *   gpa    - dlsym only cuGetProcAddress_v2, then ask it for every function by base name and
 *            CUDA version (cuda-bindings).
 * Commands (second argument on):
 *   view                          count, then per device: uuid, bus id, total; memory info
 *   alloc KIND BYTES COUNT [hold|leave]
 *                                 COUNT allocations of BYTES; "hold" waits for stdin to close
 *                                 before freeing (the test kills or releases the process);
 *                                 "leave" exits normally without freeing
 *   watch                         prints `held`, then for every line read on stdin calls cuInit
 *                                 again (an initialisation point) and prints memory info
 *   fill KIND CHUNK               allocates CHUNK at a time until refused
 *   bus BUSID                     cuDeviceGetByPCIBusId
 *   uuid UUID                     the ordinal whose UUID is UUID, or -1
 * KIND: mem pitch managed async pool vmm array array3d mipmap.
 * Output is `key value…` lines; the exit status is 0 unless a call that must work failed. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void *CUcontext, *CUstream, *CUarray, *CUmemoryPool;
typedef unsigned long long CUmemGenericAllocationHandle;
typedef struct { unsigned char bytes[16]; } CUuuid;
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
CUresult cuDeviceGetCount(int *);
CUresult cuDeviceGet(CUdevice *, int);
CUresult cuDeviceGetUuid_v2(CUuuid *, CUdevice);
CUresult cuDeviceTotalMem_v2(size_t *, CUdevice);
CUresult cuDeviceGetPCIBusId(char *, int, CUdevice);
CUresult cuDeviceGetByPCIBusId(CUdevice *, const char *);
CUresult cuDevicePrimaryCtxRetain(CUcontext *, CUdevice);
CUresult cuCtxSetCurrent(CUcontext);
CUresult cuMemGetInfo_v2(size_t *, size_t *);
CUresult cuMemAlloc_v2(CUdeviceptr *, size_t);
CUresult cuMemFree_v2(CUdeviceptr);
CUresult cuMemAllocPitch_v2(CUdeviceptr *, size_t *, size_t, size_t, unsigned);
CUresult cuMemAllocManaged(CUdeviceptr *, size_t, unsigned);
CUresult cuMemAllocAsync(CUdeviceptr *, size_t, CUstream);
CUresult cuMemFreeAsync(CUdeviceptr, CUstream);
CUresult cuMemPoolCreate(CUmemoryPool *, const CUmemPoolProps *);
CUresult cuMemPoolDestroy(CUmemoryPool);
CUresult cuMemAllocFromPoolAsync(CUdeviceptr *, size_t, CUmemoryPool, CUstream);
CUresult cuMemCreate(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long);
CUresult cuMemRelease(CUmemGenericAllocationHandle);
CUresult cuMemAddressReserve(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
CUresult cuMemAddressFree(CUdeviceptr, size_t);
CUresult cuMemMap(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long);
CUresult cuMemUnmap(CUdeviceptr, size_t);
CUresult cuMemSetAccess(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);
CUresult cuArrayCreate_v2(CUarray *, const CUDA_ARRAY_DESCRIPTOR *);
CUresult cuArray3DCreate_v2(CUarray *, const CUDA_ARRAY3D_DESCRIPTOR *);
CUresult cuArrayDestroy(CUarray);
CUresult cuMipmappedArrayCreate(CUarray *, const CUDA_ARRAY3D_DESCRIPTOR *, unsigned);
CUresult cuMipmappedArrayDestroy(CUarray);
CUresult cuGetProcAddress_v2(const char *, void **, int, unsigned long long, int *);

/* name as linked, base name for cuGetProcAddress, CUDA version to ask for */
#define FUNCS(X) \
    X(cuInit, "cuInit", 2000) \
    X(cuDeviceGetCount, "cuDeviceGetCount", 2000) \
    X(cuDeviceGet, "cuDeviceGet", 2000) \
    X(cuDeviceGetUuid_v2, "cuDeviceGetUuid", 11040) \
    X(cuDeviceTotalMem_v2, "cuDeviceTotalMem", 3020) \
    X(cuDeviceGetPCIBusId, "cuDeviceGetPCIBusId", 4010) \
    X(cuDeviceGetByPCIBusId, "cuDeviceGetByPCIBusId", 4010) \
    X(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", 7000) \
    X(cuCtxSetCurrent, "cuCtxSetCurrent", 4000) \
    X(cuMemGetInfo_v2, "cuMemGetInfo", 3020) \
    X(cuMemAlloc_v2, "cuMemAlloc", 3020) \
    X(cuMemFree_v2, "cuMemFree", 3020) \
    X(cuMemAllocPitch_v2, "cuMemAllocPitch", 3020) \
    X(cuMemAllocManaged, "cuMemAllocManaged", 6000) \
    X(cuMemAllocAsync, "cuMemAllocAsync", 11020) \
    X(cuMemFreeAsync, "cuMemFreeAsync", 11020) \
    X(cuMemPoolCreate, "cuMemPoolCreate", 11020) \
    X(cuMemPoolDestroy, "cuMemPoolDestroy", 11020) \
    X(cuMemAllocFromPoolAsync, "cuMemAllocFromPoolAsync", 11020) \
    X(cuMemCreate, "cuMemCreate", 10020) \
    X(cuMemRelease, "cuMemRelease", 10020) \
    X(cuMemAddressReserve, "cuMemAddressReserve", 10020) \
    X(cuMemAddressFree, "cuMemAddressFree", 10020) \
    X(cuMemMap, "cuMemMap", 10020) \
    X(cuMemUnmap, "cuMemUnmap", 10020) \
    X(cuMemSetAccess, "cuMemSetAccess", 10020) \
    X(cuArrayCreate_v2, "cuArrayCreate", 3020) \
    X(cuArray3DCreate_v2, "cuArray3DCreate", 3020) \
    X(cuArrayDestroy, "cuArrayDestroy", 2000) \
    X(cuMipmappedArrayCreate, "cuMipmappedArrayCreate", 5000) \
    X(cuMipmappedArrayDestroy, "cuMipmappedArrayDestroy", 5000)

static struct {
#define FIELD(n, b, v) __typeof__(&n) n;
    FUNCS(FIELD)
} f;

static void resolve(const char *how) {
    if (!strcmp(how, "link")) {
#define LINK(n, b, v) f.n = n;
        FUNCS(LINK)
        return;
    }
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (!h) { printf("dlopen-failed %s\n", dlerror()); exit(3); }
    if (!strcmp(how, "dlsym")) {
#define DLSYM(n, b, v) f.n = (__typeof__(&n))dlsym(h, #n); \
        if (!f.n) { printf("missing %s\n", #n); exit(3); }
        FUNCS(DLSYM)
        return;
    }
    __typeof__(&cuGetProcAddress_v2) gpa = (__typeof__(&cuGetProcAddress_v2))dlsym(h, "cuGetProcAddress_v2");
    if (!gpa) { printf("missing cuGetProcAddress_v2\n"); exit(3); }
#define GPA(n, b, v) { int st = -1; void *p = NULL; \
        if (gpa(b, &p, v, 0, &st) || !p) { printf("missing %s\n", b); exit(3); } f.n = (__typeof__(&n))p; }
    FUNCS(GPA)
}

#define CHECK(call) do { CUresult r_ = (call); if (r_) { printf("failed %s %d\n", #call, r_); exit(4); } } while (0)

static CUcontext ctx_of(int ord) {
    CUdevice d; CUcontext c;
    CHECK(f.cuDeviceGet(&d, ord));
    CHECK(f.cuDevicePrimaryCtxRetain(&c, d));
    CHECK(f.cuCtxSetCurrent(c));
    return c;
}

static void meminfo(const char *tag) {
    size_t fr = 0, to = 0;
    CUresult r = f.cuMemGetInfo_v2(&fr, &to);
    printf("%s %d %zu %zu\n", tag, r, fr, to);
}

/* One allocation of a kind; returns the CUresult, fills *h with what free() needs. */
typedef struct { int kind; CUdeviceptr p; size_t size; CUmemGenericAllocationHandle vh; void *arr; } Alloc;
static const char *kinds[] = {"mem", "pitch", "managed", "async", "pool", "vmm", "array", "array3d", "mipmap", 0};
static CUmemoryPool pool;

static CUresult alloc_one(int kind, size_t bytes, Alloc *a) {
    a->kind = kind; a->size = bytes;
    switch (kind) {
    case 0: return f.cuMemAlloc_v2(&a->p, bytes);
    case 1: { size_t pitch; return f.cuMemAllocPitch_v2(&a->p, &pitch, 1024, bytes / 1024, 4); }
    case 2: return f.cuMemAllocManaged(&a->p, bytes, 1);
    case 3: return f.cuMemAllocAsync(&a->p, bytes, 0);
    case 4:
        if (!pool) {
            CUmemPoolProps pp; memset(&pp, 0, sizeof pp);
            pp.allocType = 1; pp.location.type = 1; pp.location.id = 0;
            CHECK(f.cuMemPoolCreate(&pool, &pp));
        }
        return f.cuMemAllocFromPoolAsync(&a->p, bytes, pool, 0);
    case 5: {
        CUmemAllocationProp pr; memset(&pr, 0, sizeof pr);
        pr.type = 1; pr.location.type = 1; pr.location.id = 0;
        CUresult r = f.cuMemCreate(&a->vh, bytes, &pr, 0);
        if (r) return r;
        CHECK(f.cuMemAddressReserve(&a->p, bytes, 0, 0, 0));
        CHECK(f.cuMemMap(a->p, bytes, 0, a->vh, 0));
        CUmemAccessDesc ad = {{1, 0}, 3};
        CHECK(f.cuMemSetAccess(a->p, bytes, &ad, 1));
        /* As PyTorch does: the mapping keeps the memory; the handle goes at once. */
        CHECK(f.cuMemRelease(a->vh));
        return 0;
    }
    case 6: { CUDA_ARRAY_DESCRIPTOR d = {bytes / 4, 0, 0x20, 1}; return f.cuArrayCreate_v2(&a->arr, &d); }
    case 7: { CUDA_ARRAY3D_DESCRIPTOR d = {bytes / 64, 4, 4, 0x20, 1, 0}; return f.cuArray3DCreate_v2(&a->arr, &d); }
    case 8: { CUDA_ARRAY3D_DESCRIPTOR d = {bytes / 4, 0, 0, 0x20, 1, 0}; return f.cuMipmappedArrayCreate(&a->arr, &d, 1); }
    }
    return 1;
}

static void free_one(Alloc *a) {
    switch (a->kind) {
    case 0: case 1: case 2: CHECK(f.cuMemFree_v2(a->p)); break;
    case 3: case 4: CHECK(f.cuMemFreeAsync(a->p, 0)); break;
    case 5: CHECK(f.cuMemUnmap(a->p, a->size)); CHECK(f.cuMemAddressFree(a->p, a->size)); break;
    case 6: case 7: CHECK(f.cuArrayDestroy(a->arr)); break;
    case 8: CHECK(f.cuMipmappedArrayDestroy(a->arr)); break;
    }
}

static int kind_of(const char *s) {
    for (int i = 0; kinds[i]; i++) if (!strcmp(kinds[i], s)) return i;
    printf("unknown kind %s\n", s); exit(2);
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: shim_cuda link|dlsym|gpa COMMAND...\n"); return 2; }
    setvbuf(stdout, NULL, _IOLBF, 0);
    resolve(argv[1]);
    const char *cmd = argv[2];
    CUresult r = f.cuInit(0);
    printf("init %d\n", r);
    if (r) return 0;
    int n = -1;
    CHECK(f.cuDeviceGetCount(&n));
    printf("count %d\n", n);
    if (!strcmp(cmd, "view")) {
        for (int i = 0; i < n; i++) {
            CUdevice d; CUuuid u; char bus[32]; size_t total;
            CHECK(f.cuDeviceGet(&d, i));
            CHECK(f.cuDeviceGetUuid_v2(&u, d));
            CHECK(f.cuDeviceGetPCIBusId(bus, sizeof bus, d));
            CHECK(f.cuDeviceTotalMem_v2(&total, d));
            printf("dev %d GPU-", i);
            for (int k = 0; k < 16; k++) printf("%02x%s", u.bytes[k], (k == 3 || k == 5 || k == 7 || k == 9) ? "-" : "");
            printf(" %s %zu\n", bus, total);
        }
        for (int i = 0; i < n; i++) {
            char tag[16];
            ctx_of(i);
            snprintf(tag, sizeof tag, "mem%d", i);
            meminfo(tag);
        }
        return 0;
    }
    if (!strcmp(cmd, "bus") && argc > 3) {
        CUdevice d = -1;
        r = f.cuDeviceGetByPCIBusId(&d, argv[3]);
        printf("bus %d %d\n", r, d);
        return 0;
    }
    if (!strcmp(cmd, "uuid") && argc > 3) {
        int found = -1;
        for (int i = 0; i < n; i++) {
            CUdevice d; CUuuid u; char s[64]; int o = 0;
            CHECK(f.cuDeviceGet(&d, i));
            CHECK(f.cuDeviceGetUuid_v2(&u, d));
            o += sprintf(s + o, "GPU-");
            for (int k = 0; k < 16; k++) o += sprintf(s + o, "%02x%s", u.bytes[k], (k == 3 || k == 5 || k == 7 || k == 9) ? "-" : "");
            if (!strcmp(s, argv[3])) found = i;
        }
        printf("uuid %d\n", found);
        return 0;
    }
    if (n < 1) return 0;
    ctx_of(getenv("DEV") ? atoi(getenv("DEV")) : 0);
    if (!strcmp(cmd, "alloc") && argc > 5) {
        int kind = kind_of(argv[3]);
        size_t bytes = strtoull(argv[4], 0, 0);
        int count = atoi(argv[5]), ok = 0;
        Alloc *as = calloc(count, sizeof(Alloc));
        r = 0;
        for (int i = 0; i < count; i++) {
            r = alloc_one(kind, bytes, &as[i]);
            if (r) break;
            ok++;
        }
        printf("ok %d err %d\n", ok, r);
        meminfo("mem");
        if (argc > 6 && !strcmp(argv[6], "leave")) {
            fflush(stdout);
            exit(0);
        }
        if (argc > 6 && !strcmp(argv[6], "hold")) {
            printf("held\n");
            char buf[64];
            while (read(0, buf, sizeof buf) > 0) {}
        }
        for (int i = 0; i < ok; i++) free_one(&as[i]);
        printf("freed %d\n", ok);
        meminfo("mem");
        return 0;
    }
    if (!strcmp(cmd, "watch")) {
        printf("held\n");
        fflush(stdout);
        char line[256];
        while (fgets(line, sizeof line, stdin)) {
            f.cuInit(0);
            meminfo("mem");
            fflush(stdout);
        }
        return 0;
    }
    if (!strcmp(cmd, "fill") && argc > 4) {
        int kind = kind_of(argv[3]);
        size_t chunk = strtoull(argv[4], 0, 0);
        Alloc *as = calloc(1 << 16, sizeof(Alloc));
        int ok = 0;
        while (ok < (1 << 16) && !(r = alloc_one(kind, chunk, &as[ok]))) ok++;
        printf("filled %d err %d\n", ok, r);
        meminfo("mem");
        for (int i = 0; i < ok; i++) free_one(&as[i]);
        meminfo("mem");
        return 0;
    }
    fprintf(stderr, "bad command\n");
    return 2;
}
