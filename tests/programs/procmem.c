/* A program that changes its own memory through the kernel rather than by
 * storing to it (rr's jit_proc_mem, and what some JITs and debuggers-in-process
 * do): code written into a read-only executable page with pwrite and with
 * lseek + write on /proc/self/mem, a read-only constant rewritten with writev on
 * /proc/thread-self/mem, and a global set with process_vm_writev to its own pid.
 * Prints "procmem: 42 43 7 99", exit status 0.
 * "procmem parent": a forked child sets the parent's global with
 * process_vm_writev and prints what the call returned (0, or -1 and errno), then
 * the parent prints the global: "child: 0" and "parent: 99" natively.
 * "procmem page": an int3 stored with pwrite on /proc/self/mem at 0x70000000,
 * where nothing is mapped natively (and the retrograde page lies under
 * recording), as rr's syscall_bp does: "page: Input/output error". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static const volatile int constant = 5;
static volatile int global = 1;

static int into_the_parent(void)
{
    pid_t parent = getpid();
    pid_t child = fork();
    if (child == 0) {
        int ninety_nine = 99;
        struct iovec local = {&ninety_nine, sizeof ninety_nine};
        struct iovec remote = {(void *)&global, sizeof global};
        ssize_t n = process_vm_writev(parent, &local, 1, &remote, 1, 0);
        printf("child: %s\n", n == sizeof ninety_nine ? "0" : strerror(errno));
        return 0;
    }
    int status;
    waitpid(child, &status, 0);
    printf("parent: %d\n", global);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "parent") == 0)
        return into_the_parent();
    if (argc > 1 && strcmp(argv[1], "page") == 0) {
        static const unsigned char int3 = 0xcc;
        int fd = open("/proc/self/mem", O_RDWR);
        ssize_t n = pwrite(fd, &int3, 1, 0x70000000);
        printf("page: %s\n", n == 1 ? "stored" : strerror(errno));
        return 0;
    }
    /* lea eax, [rdi + 40]; ret    and    lea eax, [rdi + 1]; ret */
    static const unsigned char add_forty[] = {0x8d, 0x47, 0x28, 0xc3};
    static const unsigned char add_one[] = {0x8d, 0x47, 0x01, 0xc3};
    unsigned char *page = mmap(NULL, 4096, PROT_READ | PROT_EXEC,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int mem = open("/proc/self/mem", O_RDWR);
    int thread_mem = open("/proc/thread-self/mem", O_RDWR);
    if (page == MAP_FAILED || mem < 0 || thread_mem < 0) {
        perror("procmem");
        return 1;
    }
    if (pwrite(mem, add_forty, sizeof add_forty, (off_t)(unsigned long)page) != sizeof add_forty ||
        lseek(mem, (off_t)(unsigned long)(page + 16), SEEK_SET) < 0 ||
        write(mem, add_one, sizeof add_one) != sizeof add_one) {
        perror("procmem: /proc/self/mem");
        return 1;
    }
    int seven = 7;
    struct iovec from = {&seven, sizeof seven};
    if (lseek(thread_mem, (off_t)(unsigned long)&constant, SEEK_SET) < 0 ||
        writev(thread_mem, &from, 1) != sizeof seven) {
        perror("procmem: /proc/thread-self/mem");
        return 1;
    }
    int ninety_nine = 99;
    struct iovec local = {&ninety_nine, sizeof ninety_nine};
    struct iovec remote = {(void *)&global, sizeof global};
    if (process_vm_writev(getpid(), &local, 1, &remote, 1, 0) != sizeof ninety_nine) {
        perror("procmem: process_vm_writev");
        return 1;
    }
    int (*forty)(int) = (int (*)(int))page;
    int (*one)(int) = (int (*)(int))(page + 16);
    printf("procmem: %d %d %d %d\n", forty(2), one(42), constant, global);
    return 0;
}
