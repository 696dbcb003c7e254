/* Requests of ioctl, fcntl and prctl that retrograde does not model, each result
 * and errno printed. Natively the kernel answers; recorded, the program is told
 * what a kernel without the request answers (ENOTTY from ioctl, EINVAL from fcntl
 * and prctl), except that a descriptor that is not open is EBADF either way.
 *
 * RNDGETENTCNT on /dev/urandom and F_GETOWNER_UIDS succeed natively (so that
 * `record --strict` refuses them); no prctl option the kernel accepts is unmodelled,
 * so PR_SVE_GET_VL (arm64's) fails the same way everywhere.
 *
 *   requests [ioctl|fcntl|prctl]   all three calls, or only one of them; exits 0
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <unistd.h>

static void show(const char *what, long result)
{
    printf("%-36s %ld %s\n", what, result, result < 0 ? strerrorname_np(errno) : "");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : "";
    int entropy = -1;
    int random = open("/dev/urandom", O_RDONLY);
    if (!*only || strcmp(only, "ioctl") == 0) {
        show("ioctl RNDGETENTCNT on /dev/urandom", ioctl(random, RNDGETENTCNT, &entropy));
        show("ioctl RNDGETENTCNT again", ioctl(random, RNDGETENTCNT, &entropy));
        show("ioctl RNDGETENTCNT on a bad fd", ioctl(99, RNDGETENTCNT, &entropy));
    }
    if (!*only || strcmp(only, "fcntl") == 0) {
        unsigned int uids[2];
        show("fcntl F_GETOWNER_UIDS", fcntl(random, 17, uids));
        show("fcntl F_GETOWNER_UIDS on a bad fd", fcntl(99, 17, uids));
    }
    if (!*only || strcmp(only, "prctl") == 0)
        show("prctl PR_SVE_GET_VL", prctl(51, 0, 0, 0, 0));
    return 0;
}
