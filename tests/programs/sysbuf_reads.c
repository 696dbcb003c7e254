/* Two buffered reads of argv[1] with a function between them (record
 * --syscall-buffer): gdb stops between and looks at what the first one stored. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

char first[9], second[9];

void between(void)
{
    __asm__ volatile("" ::: "memory");
}

void after_both(void)
{
    __asm__ volatile("" ::: "memory");
}

int main(int argc, char **argv)
{
    int fd = open(argc > 1 ? argv[1] : "/etc/hostname", O_RDONLY);
    if (fd < 0)
        return 1;
    read(fd, first, 8);
    between();
    read(fd, second, 8);
    after_both();
    printf("%s|%s\n", first, second);
    return 0;
}
