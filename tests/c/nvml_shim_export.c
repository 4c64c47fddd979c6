/* Reads nvidia-smi's export table the way nvidia-smi does (dlopen, dlsym, uuid) and prints what
 * it sees: whether the table is the driver's own, its size, and the bus id of indices 0-2 through
 * slot 81 and slot 75; then a CPU's GPU set, the compute processes of index 0 through `_v3`
 * (records of argv[1] bytes, default 24) and the detail list, its accounting pids and the
 * accounting record's answer for each pid in argv[2..]. Used against tests/c/nvml_shim_fake.c. */
#include <stdlib.h>
#include <string.h>
#include <dlfcn.h>
#include <stdio.h>

typedef int (*get_table_fn)(const void **, const unsigned char *);
typedef int (*bus_id_fn)(unsigned, char *, unsigned);
typedef int (*bus_fn)(unsigned, unsigned *, unsigned *, unsigned *);
typedef void *(*fake_fn)(void);
typedef int (*count_fn)(unsigned *);
typedef int (*index_fn)(void *, unsigned *);
typedef int (*gpu_set_fn)(unsigned, unsigned *, void **);

int main(int argc, char **argv) {
    static const unsigned char smi[16] = {0xc4, 0xfe, 0x3e, 0x6c, 0xc9, 0x8f, 0x6c, 0x4e,
                                          0xa3, 0x27, 0xee, 0x69, 0x6e, 0x12, 0xf7, 0xc4};
    void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    if (!h) {
        printf("dlopen: %s\n", dlerror());
        return 1;
    }
    get_table_fn get = (get_table_fn)dlsym(h, "nvmlInternalGetExportTable");
    fake_fn fake = (fake_fn)dlsym(h, "fakeNvmlTable");
    count_fn count = (count_fn)dlsym(h, "nvmlDeviceGetCount_v2");
    const void *const *t = NULL;
    if (!get || !fake || !count || get((const void **)&t, smi) != 0 || !t) {
        printf("no table\n");
        return 1;
    }
    unsigned n = 0;
    count(&n);
    printf("count %u\n", n);
    printf("own %d\n", (const void *)t == fake());
    printf("size %#lx\n", (unsigned long)t[0]);
    for (unsigned i = 0; i < 3; i++) {
        char buf[32] = "";
        int r = ((bus_id_fn)t[81])(i, buf, sizeof buf);
        unsigned d = 0, b = 0, v = 0;
        int r2 = ((bus_fn)t[75])(i, &d, &b, &v);
        printf("index %u: 81 -> %d %s; 75 -> %d %02X\n", i, r, r ? "-" : buf, r2, r2 ? 0 : b);
    }
    /* A CPU's GPUs: the size query, then the handles, each with its (virtual) index. */
    gpu_set_fn set = (gpu_set_fn)dlsym(h, "nvmlSystemGetTopologyGpuSet");
    index_fn index = (index_fn)dlsym(h, "nvmlDeviceGetIndex");
    if (set && index) {
        unsigned m = 0;
        int r = set(0, &m, NULL);
        printf("gpu set probe %d %u;", r, m);
        void *hs[8] = {0};
        m = 8;
        r = set(0, &m, hs);
        printf(" gpu set %d %u:", r, m);
        for (unsigned i = 0; i < m && i < 8; i++) {
            unsigned ix = 99;
            index(hs[i], &ix);
            printf(" %u", ix);
        }
        printf("\n");
    }
    typedef int (*procs_fn)(void *, unsigned *, void *);
    typedef int (*by_index_fn)(unsigned, void **);
    procs_fn v3 = (procs_fn)dlsym(h, "nvmlDeviceGetComputeRunningProcesses_v3");
    by_index_fn by_index = (by_index_fn)dlsym(h, "nvmlDeviceGetHandleByIndex_v2");
    void *dev = NULL;
    if (v3 && by_index && by_index(0, &dev) == 0) {
        size_t stride = argc > 1 ? strtoul(argv[1], NULL, 10) : 24;
        unsigned m = 0;
        int probe = v3(dev, &m, NULL);
        unsigned char buf[16 * 32];
        unsigned cap = m + 1;
        int r = v3(dev, &cap, buf);
        printf("v3 probe %d %u; v3 %d %u:", probe, m, r, cap);
        for (unsigned i = 0; i < cap && i < 16; i++) {
            unsigned pid;
            unsigned long long used;
            memcpy(&pid, buf + i * stride, 4);
            memcpy(&used, buf + i * stride + 8, 8);
            printf(" %u=%llu", pid, used);
        }
        printf("\n");
    }
    struct detail_list {
        unsigned version, mode, entries;
        void *records;
    };
    typedef int (*detail_fn)(void *, struct detail_list *);
    detail_fn detail = (detail_fn)dlsym(h, "nvmlDeviceGetRunningProcessDetailList");
    if (detail && dev) {
        struct detail_list l = {24u | 1u << 24, 0, 0, NULL};
        int probe = detail(dev, &l);
        unsigned char buf[16 * 32];
        unsigned want = l.entries;
        l.entries = 16;
        l.records = buf;
        int r = detail(dev, &l);
        printf("detail probe %d %u; detail %d %u:", probe, want, r, l.entries);
        for (unsigned i = 0; i < l.entries && i < 16; i++) {
            unsigned pid;
            unsigned long long used;
            memcpy(&pid, buf + i * 32, 4);
            memcpy(&used, buf + i * 32 + 8, 8);
            printf(" %u=%llu", pid, used);
        }
        printf("\n");
    }
    typedef int (*acct_fn)(void *, unsigned *, unsigned *);
    typedef int (*stats_fn)(void *, unsigned, unsigned long long *);
    acct_fn acct = (acct_fn)dlsym(h, "nvmlDeviceGetAccountingPids");
    stats_fn stats = (stats_fn)dlsym(h, "nvmlDeviceGetAccountingStats");
    if (acct && stats && dev) {
        unsigned pids[16], m = 0;
        int probe = acct(dev, &m, NULL);
        unsigned want = m;
        m = 16;
        int r = acct(dev, &m, pids);
        printf("accounting probe %d %u; accounting %d %u:", probe, want, r, m);
        for (unsigned i = 0; i < m && i < 16; i++)
            printf(" %u", pids[i]);
        printf("\n");
        for (int i = 2; i < argc; i++) {
            unsigned long long rec[8] = {0};
            printf("stats %s %d\n", argv[i], stats(dev, (unsigned)strtoul(argv[i], NULL, 10), rec));
        }
    }
    return 0;
}
