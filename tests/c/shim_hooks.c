/* The shim's hooks, seen from a program. Commands:
 *   next       dlsym(RTLD_NEXT / RTLD_DEFAULT) keep their meaning (with shim_next_lib.c)
 *   versions   both glibc versions of dlsym reach the shim (lookups on the libcuda handle)
 *   procaddr   what cuGetProcAddress(_v2) answers: "<query> <object>:<symbol>" or "<query> err
 *              <rc> <status>", where object/symbol come from dladdr of the answer
 *   threads N M  N threads allocating and freeing M times each; memory info after
 *   fork       allocate 1 GiB, fork a child that waits on stdin; "held" when both are ready */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *genv_test_greet(void);

/* The pre-2.34 version of dlsym, as programs built against older glibc reference it. */
void *dlsym_old(void *, const char *);
__asm__(".symver dlsym_old, dlsym@GLIBC_2.2.5");

typedef int CUresult;
typedef CUresult (*gpa_v2_t)(const char *, void **, int, unsigned long long, int *);
typedef CUresult (*gpa_t)(const char *, void **, int, unsigned long long);

static const char *where(void *p) {
    static char buf[256];
    Dl_info i;
    if (!p || !dladdr(p, &i) || !i.dli_sname) return "unknown";
    const char *f = strrchr(i.dli_fname, '/');
    snprintf(buf, sizeof buf, "%s:%s", f ? f + 1 : i.dli_fname, i.dli_sname);
    return buf;
}

static void *cuda(void) {
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (!h) { printf("dlopen-failed\n"); exit(3); }
    return h;
}

static void ask(gpa_v2_t g, const char *name, int ver, unsigned long long flags) {
    void *p = NULL;
    int st = -1;
    CUresult r = g(name, &p, ver, flags, &st);
    if (r) printf("%s@%d/%llu err %d %d\n", name, ver, flags, r, st);
    else printf("%s@%d/%llu %s\n", name, ver, flags, where(p));
}

typedef CUresult (*init_t)(unsigned);
typedef CUresult (*dget_t)(int *, int);
typedef CUresult (*retain_t)(void **, int);
typedef CUresult (*setcur_t)(void *);
typedef CUresult (*alloc_t)(unsigned long long *, size_t);
typedef CUresult (*free_t)(unsigned long long);
typedef CUresult (*info_t)(size_t *, size_t *);
static init_t cuInit_;
static dget_t cuDeviceGet_;
static retain_t retain_;
static setcur_t setcur_;
static alloc_t alloc_;
static free_t free_;
static info_t info_;
static void *ctx;
static int iters, failures;

static void load(void) {
    void *h = cuda();
    cuInit_ = (init_t)dlsym(h, "cuInit");
    cuDeviceGet_ = (dget_t)dlsym(h, "cuDeviceGet");
    retain_ = (retain_t)dlsym(h, "cuDevicePrimaryCtxRetain");
    setcur_ = (setcur_t)dlsym(h, "cuCtxSetCurrent");
    alloc_ = (alloc_t)dlsym(h, "cuMemAlloc_v2");
    free_ = (free_t)dlsym(h, "cuMemFree_v2");
    info_ = (info_t)dlsym(h, "cuMemGetInfo_v2");
    int d;
    if (cuInit_(0) || cuDeviceGet_(&d, 0) || retain_(&ctx, d) || setcur_(ctx)) {
        printf("init-failed\n");
        exit(3);
    }
}

static void *worker(void *arg) {
    unsigned seed = (unsigned)(size_t)arg;
    if (setcur_(ctx)) __sync_fetch_and_add(&failures, 1);
    for (int i = 0; i < iters; i++) {
        unsigned long long p;
        size_t sz = ((rand_r(&seed) % 4096) + 1) << 10;
        CUresult r = alloc_(&p, sz);
        if (r == 2) continue; /* over the cap under contention: fine */
        if (r || free_(p)) __sync_fetch_and_add(&failures, 1);
    }
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) return 2;
    if (!strcmp(argv[1], "next")) {
        printf("call %s\n", genv_test_greet());
        const char *(*n)(void) = (const char *(*)(void))dlsym(RTLD_NEXT, "genv_test_greet");
        printf("next %s\n", n ? n() : "none");
        const char *(*d)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "genv_test_greet");
        printf("default %s\n", d ? d() : "none");
        printf("missing %s\n", dlsym(RTLD_DEFAULT, "genv_no_such_symbol") ? "found" : "none");
        void *(*m)(size_t) = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
        printf("malloc %s\n", where((void *)m));
        return 0;
    }
    if (!strcmp(argv[1], "versions")) {
        void *h = cuda();
        printf("new %s\n", where(dlsym(h, "cuMemAlloc_v2")));
        printf("old %s\n", where(dlsym_old(h, "cuMemAlloc_v2")));
        printf("old-pass %s\n", where(dlsym_old(h, "cuLaunchKernel")));
        printf("absent %s\n", dlsym(h, "cuNoSuchFunction") ? "found" : "none");
        printf("self %s\n", where(dlsym(RTLD_DEFAULT, "main")));
        return 0;
    }
    if (!strcmp(argv[1], "procaddr")) {
        void *h = cuda();
        gpa_v2_t g = (gpa_v2_t)dlsym(h, "cuGetProcAddress_v2");
        printf("gpa %s\n", where((void *)g));
        ask(g, "cuMemAlloc", 3020, 0);
        ask(g, "cuMemAlloc", 2000, 0);
        ask(g, "cuMemAlloc", 1000, 0);
        ask(g, "cuMemFree", 3020, 0);
        ask(g, "cuMemGetInfo", 12000, 0);
        ask(g, "cuMemAllocAsync", 11020, 0);
        ask(g, "cuMemAllocAsync", 11020, 2);
        ask(g, "cuMemAllocAsync", 11010, 0);
        ask(g, "cuLaunchKernel", 4000, 0);
        ask(g, "cuLaunchKernel", 12000, 2);
        ask(g, "cuCtxCreate", 3020, 0);
        ask(g, "cuGetProcAddress", 12000, 0);
        ask(g, "cuGetProcAddress", 11030, 0);
        ask(g, "cuFutureEntryPoint", 13000, 0);
        gpa_t g1 = (gpa_t)dlsym(h, "cuGetProcAddress");
        void *p = NULL;
        CUresult r = g1("cuMemFree", &p, 3020, 0);
        printf("v1:cuMemFree@3020 %d %s\n", r, where(p));
        /* Pointer identity for a function the shim does not wrap. */
        void *direct = dlsym(h, "cuLaunchKernel");
        p = NULL;
        g("cuLaunchKernel", &p, 12000, 0, NULL);
        printf("launch-identical %d\n", p == direct);
        return 0;
    }
    if (!strcmp(argv[1], "threads") && argc > 3) {
        load();
        int n = atoi(argv[2]);
        iters = atoi(argv[3]);
        pthread_t t[256];
        for (int i = 0; i < n && i < 256; i++) pthread_create(&t[i], NULL, worker, (void *)(size_t)(i + 1));
        for (int i = 0; i < n && i < 256; i++) pthread_join(t[i], NULL);
        size_t f = 0, tot = 0;
        info_(&f, &tot);
        printf("threads failures %d free %zu total %zu\n", failures, f, tot);
        return 0;
    }
    if (!strcmp(argv[1], "fork")) {
        load();
        unsigned long long p;
        printf("alloc %d\n", alloc_(&p, 1ull << 30));
        pid_t c = fork();
        if (c == 0) {
            /* The child never touches CUDA; it must not keep the parent's registration. */
            char buf[16];
            while (read(0, buf, sizeof buf) > 0) {}
            _exit(0);
        }
        printf("child %d\nheld\n", c);
        char buf[16];
        while (read(0, buf, sizeof buf) > 0) {}
        return 0;
    }
    return 2;
}
