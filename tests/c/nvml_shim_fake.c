/* A minimal libnvidia-ml.so.1 whose nvidia-smi export table has the size given by
 * FAKE_NVML_TABLE_SIZE (default 0x7a8, the 535 layout), to check how the shim serves a measured
 * layout and one nobody measured. Four GPUs; slot 81 writes the bus id of an
 * NVML index as 535 does. The topology functions answer every GPU. Host GPU 2 runs the
 * compute processes listed in FAKE_NVML_PIDS ("pid:bytes,pid:bytes"), through the `_v3` list
 * and, unless built with -DFAKE_CC_V3, the detail list; with -DFAKE_CC_V3 the library looks like
 * the drivers whose `_v3` records were 32 bytes (it has nvmlDeviceGetConfComputeMemSizeInfo and
 * no detail list). `fakeNvmlTable` (not an nvml* name, so never wrapped) gives the
 * table's real address to the client. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 512
#define GPUS 4
static void *table[SLOTS];
static int devices[GPUS];

static int bus_of(unsigned index) { return 0x18 + 0x10 * (int)index; }

static int bus_id_by_index(unsigned index, char *buf, unsigned len) {
    if (index >= GPUS || !buf)
        return 2;
    if (len < 13)
        return 7;
    snprintf(buf, len, "%04X:%02X:%02X.0", 0, bus_of(index), 0);
    return 0;
}

static int bus_by_index(unsigned index, unsigned *dom, unsigned *bus, unsigned *dev) {
    if (index >= GPUS || !dom || !bus || !dev)
        return 2;
    *dom = 0;
    *bus = (unsigned)bus_of(index);
    *dev = 0;
    return 0;
}

void *fakeNvmlTable(void) { return table; }

int nvmlInitWithFlags(unsigned flags) { (void)flags; return 0; }
int nvmlInit_v2(void) { return 0; }
int nvmlShutdown(void) { return 0; }
int nvmlDeviceGetCount_v2(unsigned *n) { if (!n) return 2; *n = GPUS; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned i, void **h) {
    if (i >= GPUS || !h)
        return 2;
    *h = &devices[i];
    return 0;
}
int nvmlDeviceGetIndex(void *h, unsigned *i) {
    if ((int *)h < devices || (int *)h >= devices + GPUS || !i)
        return 2;
    *i = (unsigned)((int *)h - devices);
    return 0;
}

/* Size query with count 0, as NVML documents for the topology functions. */
static int all_devices(unsigned *count, void **out) {
    if (!count)
        return 2;
    if (*count == 0) {
        *count = GPUS;
        return 0;
    }
    if (*count < GPUS) {
        *count = GPUS;
        return 7;
    }
    for (int i = 0; i < GPUS; i++)
        out[i] = &devices[i];
    *count = GPUS;
    return 0;
}
int nvmlDeviceGetTopologyNearestGpus(void *d, unsigned level, unsigned *count, void **out) {
    (void)d;
    (void)level;
    return all_devices(count, out);
}
int nvmlSystemGetTopologyGpuSet(unsigned cpu, unsigned *count, void **out) {
    (void)cpu;
    return all_devices(count, out);
}

/* The processes of FAKE_NVML_PIDS on device `d` (all on host GPU 2): their count. */
static unsigned parse_pids(void *d, unsigned pids[16], unsigned long long used[16]) {
    unsigned n = 0;
    const char *s = getenv("FAKE_NVML_PIDS");
    while (s && *s && n < 16) {
        char *end;
        pids[n] = (unsigned)strtoul(s, &end, 10);
        used[n] = *end == ':' ? strtoull(end + 1, &end, 10) : 0;
        n++;
        s = *end == ',' ? end + 1 : end;
        if (end == s && *s)
            break;
    }
    return (int *)d == &devices[2] ? n : 0;
}

/* Accounting (as with accounting mode on): the pids of FAKE_NVML_PIDS, and a record each. */
int nvmlDeviceGetAccountingPids(void *d, unsigned *count, unsigned *out) {
    unsigned pids[16];
    unsigned long long used[16];
    if (!count || (int *)d < devices || (int *)d >= devices + GPUS)
        return 2;
    unsigned n = parse_pids(d, pids, used);
    if (*count < n) {
        *count = n;
        return 7;
    }
    *count = n;
    memcpy(out, pids, n * sizeof *pids);
    return 0;
}
int nvmlDeviceGetAccountingStats(void *d, unsigned pid, unsigned long long *stats) {
    unsigned pids[16];
    unsigned long long used[16];
    unsigned n = parse_pids(d, pids, used);
    for (unsigned i = 0; i < n; i++)
        if (pids[i] == pid) {
            stats[0] = used[i];
            return 0;
        }
    return 6;
}

/* Records: pid u32 at 0, used u64 at 8, instance ids at 16 and 20, [cc memory u64 at 24]. */
static int procs(void *d, unsigned *count, unsigned char *out, size_t stride) {
    unsigned pids[16];
    unsigned long long used[16];
    if (!count || (int *)d < devices || (int *)d >= devices + GPUS)
        return 2;
    unsigned n = parse_pids(d, pids, used);
    if (*count < n) {
        *count = n;
        return 7;
    }
    *count = n;
    for (unsigned i = 0; i < n; i++) {
        unsigned char *r = out + i * stride;
        unsigned none = 0xFFFFFFFFu;
        memset(r, 0, stride);
        memcpy(r, &pids[i], 4);
        memcpy(r + 8, &used[i], 8);
        memcpy(r + 16, &none, 4);
        memcpy(r + 20, &none, 4);
    }
    return 0;
}

#ifdef FAKE_CC_V3
int nvmlDeviceGetComputeRunningProcesses_v3(void *d, unsigned *count, void *out) {
    return procs(d, count, out, 32);
}
int nvmlDeviceGetConfComputeMemSizeInfo(void *d, void *info) {
    (void)d;
    (void)info;
    return 3;
}
#else
int nvmlDeviceGetComputeRunningProcesses_v3(void *d, unsigned *count, void *out) {
    return procs(d, count, out, 24);
}
struct detail_list {
    unsigned version, mode, entries;
    void *records;
};
int nvmlDeviceGetRunningProcessDetailList(void *d, struct detail_list *l) {
    if (!l || l->version != (24u | 1u << 24) || l->mode != 0)
        return 2;
    return procs(d, &l->entries, l->records, 32);
}
#endif

int nvmlInternalGetExportTable(const void **out, const unsigned char *uuid) {
    static const unsigned char smi[16] = {0xc4, 0xfe, 0x3e, 0x6c, 0xc9, 0x8f, 0x6c, 0x4e,
                                          0xa3, 0x27, 0xee, 0x69, 0x6e, 0x12, 0xf7, 0xc4};
    if (!out || !uuid)
        return 2;
    if (memcmp(uuid, smi, 16) != 0)
        return 3;
    const char *s = getenv("FAKE_NVML_TABLE_SIZE");
    size_t size = s ? strtoul(s, NULL, 0) : 0x7a8;
    if (size > sizeof table)
        size = sizeof table;
    table[0] = (void *)size;
    table[75] = (void *)bus_by_index;
    table[81] = (void *)bus_id_by_index;
    *out = table;
    return 0;
}
