/* Built twice, as libshim_next_a.so (-DWHICH='"a"' -DCHAIN) and libshim_next_b.so
 * (-DWHICH='"b"'): both define genv_test_greet; a's asks dlsym(RTLD_NEXT) for the next one, as
 * interposing libraries (profilers, tracers) do. With RTLD_NEXT answered relative to the wrong
 * object, a's greet would find itself and recurse. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>

const char *genv_test_greet(void) {
#ifdef CHAIN
    static char buf[64];
    const char *(*next)(void) = (const char *(*)(void))dlsym(RTLD_NEXT, "genv_test_greet");
    snprintf(buf, sizeof buf, "%s>%s", WHICH, next ? next() : "none");
    return buf;
#else
    return WHICH;
#endif
}
