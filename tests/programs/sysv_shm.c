/* A SysV shared memory segment: shmget, shmat, a write and a read through it,
 * mprotect of part of it, shmdt. The segment is left in place (the test removes
 * it) and its id goes to stderr, so that stdout is the same in every run.
 * Exit status 0. */
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <unistd.h>

int main(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    int id = shmget(IPC_PRIVATE, 3 * page + 100, IPC_CREAT | 0600);
    if (id < 0) {
        perror("shmget");
        return 1;
    }
    fprintf(stderr, "shmid %d\n", id);
    char *p = shmat(id, NULL, 0);
    if (p == (void *)-1) {
        perror("shmat");
        return 1;
    }
    printf("fresh segment starts with %d, ends with %d\n", p[0], p[3 * page + 99]);
    strcpy(p + page + 5, "written through shmat");
    printf("read back: %s\n", p + page + 5);
    printf("mprotect of page 0: %d\n", mprotect(p, page, PROT_READ));
    printf("shmdt: %d\n", shmdt(p));
    /* Attached again: the segment kept what was written. */
    char *q = shmat(id, NULL, SHM_RDONLY);
    printf("attached again, read-only: %s\n", q + page + 5);
    printf("shmdt: %d\n", shmdt(q));
    return 0;
}
