/* A minimal libnvidia-ml.so.1 whose nvidia-smi export table has the size given by
 * FAKE_NVML_TABLE_SIZE (default 0x7a8, the 535 layout), to check that the shim wraps the 535
 * layout and hands any other one over untouched. Four GPUs; slot 81 writes the bus id of an
 * NVML index as 535 does. The topology functions answer every GPU. `fakeNvmlTable` (not an nvml* name, so never wrapped) gives the
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
