/* Start-up cost of a program: spawns PROGRAM N times, one after the other, and prints the median
 * and the minimum wall time per spawn+exit in microseconds, and the minor page faults per run
 * (getrusage of the children). Run by scripts/bench-startup.sh with and without a preload.
 * The children get this process's environment with every `CHILD_NAME=value` turned into
 * `NAME=value`, so that a preload reaches them and not the spawner itself (as a shell, which
 * runs without the shim, starts its programs).
 * Usage: startup_spawn N PROGRAM [ARGS...] */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: startup_spawn N PROGRAM [ARGS...]\n"); return 2; }
    int n = atoi(argv[1]);
    if (n < 1) return 2;
    double *t = malloc(sizeof(double) * n);
    int ne = 0;
    while (environ[ne]) ne++;
    char **envp = calloc(ne + 1, sizeof(char *));
    for (int i = 0; i < ne; i++)
        envp[i] = strncmp(environ[i], "CHILD_", 6) == 0 ? environ[i] + 6 : environ[i];
    struct rusage r0, r1;
    getrusage(RUSAGE_CHILDREN, &r0);
    for (int i = 0; i < n; i++) {
        pid_t p;
        int st;
        double t0 = now_us();
        if (posix_spawn(&p, argv[2], 0, 0, argv + 2, envp)) { perror("posix_spawn"); return 1; }
        if (waitpid(p, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
            fprintf(stderr, "child failed (status %d)\n", st);
            return 1;
        }
        t[i] = now_us() - t0;
    }
    getrusage(RUSAGE_CHILDREN, &r1);
    qsort(t, n, sizeof(double), cmp);
    printf("%.1f %.1f %.1f\n", t[n / 2], t[0], (double)(r1.ru_minflt - r0.ru_minflt) / n);
    return 0;
}
