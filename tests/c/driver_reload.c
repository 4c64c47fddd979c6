/* A program that closes the driver library and opens it again, as nvml-wrapper does when its
 * Nvml is dropped and made again: `driver_reload nvml|cuda`. Between the two opens the address
 * range the library occupied is taken (if it is free), so that a library really unloaded must
 * come back elsewhere: the shim must not call what it resolved in the first copy.
 * Prints `first N`, `second N` (the init call's results) and `ok`. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

typedef int (*init_fn)(unsigned);
typedef int (*init0_fn)(void);

/* The address range of the object mapped from `path`, from /proc/self/maps. */
static void range_of(const char *path, unsigned long *lo, unsigned long *hi) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4096];
    *lo = ~0UL;
    *hi = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long a, b;
        if (strstr(line, path) && sscanf(line, "%lx-%lx", &a, &b) == 2) {
            if (a < *lo) *lo = a;
            if (b > *hi) *hi = b;
        }
    }
    if (f) fclose(f);
}

static int call(const char *lib, const char *name, int cuda, unsigned long *lo, unsigned long *hi) {
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("dlopen %s\n", dlerror());
        return -1;
    }
    void *f = dlsym(h, name);
    if (!f) {
        printf("dlsym %s\n", dlerror());
        return -1;
    }
    /* The library's own mapping (dladdr(f) may name the shim, whose wrapper `f` is). */
    struct link_map *lm = 0;
    if (lo && dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name) range_of(lm->l_name, lo, hi);
    int r = cuda ? ((init_fn)f)(0) : ((init0_fn)f)();
    if (!cuda) {
        int (*shutdown)(void) = (int (*)(void))dlsym(h, "nvmlShutdown");
        if (shutdown) shutdown();
    }
    dlclose(h);
    return r;
}

int main(int argc, char **argv) {
    int cuda = argc > 1 && !strcmp(argv[1], "cuda");
    const char *lib = cuda ? "libcuda.so.1" : "libnvidia-ml.so.1";
    const char *name = cuda ? "cuInit" : "nvmlInit_v2";
    unsigned long lo = 0, hi = 0;
    printf("first %d\n", call(lib, name, cuda, &lo, &hi));
    /* Occupy where the library was, if it was unmapped. */
    if (hi > lo)
        mmap((void *)lo, hi - lo, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    printf("second %d\n", call(lib, name, cuda, 0, 0));
    printf("ok\n");
    return 0;
}
