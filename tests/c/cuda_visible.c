/* Prints the devices this process sees: `init <code>`, then `count <n>` and one
 * `device <ordinal> <uuid> <bus id>` line each (CUDA_VISIBLE_DEVICES / CUDA_DEVICE_ORDER). */
#include <stdio.h>

typedef int CUresult;
typedef struct { unsigned char bytes[16]; } CUuuid;
CUresult cuInit(unsigned);
CUresult cuDeviceGetCount(int *);
CUresult cuDeviceGetUuid(CUuuid *, int);
CUresult cuDeviceGetPCIBusId(char *, int, int);

int main(void) {
    CUresult r = cuInit(0);
    printf("init %d\n", r);
    int n = -1;
    r = cuDeviceGetCount(&n);
    printf("count %d %d\n", r, n);
    for (int i = 0; i < n; i++) {
        CUuuid u;
        char bus[32];
        if (cuDeviceGetUuid(&u, i) || cuDeviceGetPCIBusId(bus, sizeof bus, i))
            return 1;
        printf("device %d GPU-", i);
        for (int k = 0; k < 16; k++)
            printf("%02x%s", u.bytes[k], (k == 3 || k == 5 || k == 7 || k == 9) ? "-" : "");
        printf(" %s\n", bus);
    }
    return 0;
}
