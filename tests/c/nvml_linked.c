/* A program linked with -lnvidia-ml (no dlopen, no dlsym): it binds NVML's names in the global
 * scope, where a preloaded shim comes first. Prints what it sees: the device count (v1, v2),
 * then per device its index, UUID, whether the v1 and v2 lookups by index and the lookup by UUID
 * agree, memory (v1 and v2: total used), and its compute processes (_v3: pid=used); then the
 * answer of nvmlDeviceGetHandleByUUID and ..ByPciBusId_v2 for argv[1] and argv[2]. NVML's own
 * declarations, written here: the machine has no nvml.h. */
#include <stdio.h>
#include <string.h>

typedef void *nvmlDevice_t;
typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;
typedef struct {
    unsigned version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;
typedef struct {
    unsigned pid;
    unsigned long long usedGpuMemory;
    unsigned gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;

int nvmlInit_v2(void);
int nvmlShutdown(void);
int nvmlDeviceGetCount(unsigned *);
int nvmlDeviceGetCount_v2(unsigned *);
int nvmlDeviceGetHandleByIndex(unsigned, nvmlDevice_t *);
int nvmlDeviceGetHandleByIndex_v2(unsigned, nvmlDevice_t *);
int nvmlDeviceGetHandleByUUID(const char *, nvmlDevice_t *);
int nvmlDeviceGetHandleByPciBusId_v2(const char *, nvmlDevice_t *);
int nvmlDeviceGetIndex(nvmlDevice_t, unsigned *);
int nvmlDeviceGetUUID(nvmlDevice_t, char *, unsigned);
int nvmlDeviceGetMemoryInfo(nvmlDevice_t, nvmlMemory_t *);
int nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t, nvmlMemory_v2_t *);
int nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t, unsigned *, nvmlProcessInfo_t *);

int main(int argc, char **argv) {
    if (nvmlInit_v2() != 0) {
        printf("init failed\n");
        return 1;
    }
    unsigned n1 = 0, n2 = 0;
    int r1 = nvmlDeviceGetCount(&n1), r2 = nvmlDeviceGetCount_v2(&n2);
    printf("count %d %u %d %u\n", r1, n1, r2, n2);
    for (unsigned i = 0; i < n2; i++) {
        nvmlDevice_t h = NULL, h1 = NULL, hu = NULL;
        char uuid[96] = "";
        unsigned index = 99;
        nvmlDeviceGetHandleByIndex_v2(i, &h);
        nvmlDeviceGetHandleByIndex(i, &h1);
        nvmlDeviceGetIndex(h, &index);
        nvmlDeviceGetUUID(h, uuid, sizeof uuid);
        int ru = nvmlDeviceGetHandleByUUID(uuid, &hu);
        nvmlMemory_t m1;
        nvmlMemory_v2_t m2;
        memset(&m2, 0, sizeof m2);
        m2.version = (unsigned)sizeof m2 | 2u << 24;
        nvmlDeviceGetMemoryInfo(h, &m1);
        nvmlDeviceGetMemoryInfo_v2(h, &m2);
        printf("gpu %u: index %u %s same %d %d; mem %llu %llu %llu %llu; procs", i, index, uuid,
               h1 == h, ru == 0 && hu == h, m1.total, m1.used, m2.total, m2.used);
        nvmlProcessInfo_t p[16];
        unsigned np = 16;
        if (nvmlDeviceGetComputeRunningProcesses_v3(h, &np, p) == 0)
            for (unsigned k = 0; k < np; k++)
                printf(" %u=%llu", p[k].pid, p[k].usedGpuMemory);
        printf("\n");
    }
    nvmlDevice_t h = NULL;
    if (argc > 2)
        printf("by uuid %d; by bus id %d\n", nvmlDeviceGetHandleByUUID(argv[1], &h),
               nvmlDeviceGetHandleByPciBusId_v2(argv[2], &h));
    nvmlShutdown();
    return 0;
}
