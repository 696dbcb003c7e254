/* Sets and reads back every prctl option an unprivileged x86-64 program can, and
 * prints what the kernel answered: the result, errno, and the value read back.
 * Under recording and replay every line must be what it is natively. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <linux/capability.h>
#include <unistd.h>

#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#define PR_GET_MDWE 66
#endif
#ifndef PR_GET_SHADOW_STACK_STATUS
#define PR_GET_SHADOW_STACK_STATUS 74
#endif

static void show(const char *what, long result)
{
    printf("%-28s %ld %s\n", what, result, result < 0 ? strerrorname_np(errno) : "");
}

/* An option that stores an int through its second argument. */
static void show_int(const char *what, int option)
{
    int value = -12345;
    long result = prctl(option, &value, 0, 0, 0);
    printf("%-28s %ld %s value %d\n", what, result, result < 0 ? strerrorname_np(errno) : "",
           value);
}

static sigjmp_buf rdtsc_faulted;

static void on_segv(int signo)
{
    siglongjmp(rdtsc_faulted, 1);
}

/* Whether rdtsc runs or faults with SIGSEGV (PR_TSC_SIGSEGV). */
static const char *try_rdtsc(void)
{
    struct sigaction action = {.sa_handler = on_segv}, old;
    sigaction(SIGSEGV, &action, &old);
    const char *what = "ran";
    if (sigsetjmp(rdtsc_faulted, 1) == 0) {
        unsigned lo, hi;
        __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    } else {
        what = "faulted";
    }
    sigaction(SIGSEGV, &old, 0);
    return what;
}

int main(void)
{
    char name[17] = {0};
    show("GET_NAME", prctl(PR_GET_NAME, name, 0, 0, 0));
    printf("  name %s\n", name);
    show("SET_NAME", prctl(PR_SET_NAME, "fidelity-name", 0, 0, 0));
    show("GET_NAME", prctl(PR_GET_NAME, name, 0, 0, 0));
    printf("  name %s\n", name);

    show("GET_KEEPCAPS", prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0));
    show("SET_KEEPCAPS 1", prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0));
    show("GET_KEEPCAPS", prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0));

    show("GET_DUMPABLE", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
    show("SET_DUMPABLE 0", prctl(PR_SET_DUMPABLE, 0, 0, 0, 0));
    show("GET_DUMPABLE", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
    show("SET_DUMPABLE 1", prctl(PR_SET_DUMPABLE, 1, 0, 0, 0));
    show("SET_DUMPABLE 7", prctl(PR_SET_DUMPABLE, 7, 0, 0, 0));

    show("GET_TIMERSLACK", prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0));
    show("SET_TIMERSLACK 123456", prctl(PR_SET_TIMERSLACK, 123456, 0, 0, 0));
    show("GET_TIMERSLACK", prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0));

    show("MCE_KILL_GET", prctl(PR_MCE_KILL_GET, 0, 0, 0, 0));
    show("MCE_KILL SET EARLY", prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0));
    show("MCE_KILL_GET", prctl(PR_MCE_KILL_GET, 0, 0, 0, 0));
    show("MCE_KILL CLEAR", prctl(PR_MCE_KILL, PR_MCE_KILL_CLEAR, 0, 0, 0));
    show("MCE_KILL_GET", prctl(PR_MCE_KILL_GET, 0, 0, 0, 0));

    show_int("GET_PDEATHSIG", PR_GET_PDEATHSIG);
    show("SET_PDEATHSIG SIGUSR1", prctl(PR_SET_PDEATHSIG, SIGUSR1, 0, 0, 0));
    show_int("GET_PDEATHSIG", PR_GET_PDEATHSIG);
    show("SET_PDEATHSIG 0", prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0));

    show_int("GET_CHILD_SUBREAPER", PR_GET_CHILD_SUBREAPER);
    show("SET_CHILD_SUBREAPER 1", prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0));
    show_int("GET_CHILD_SUBREAPER", PR_GET_CHILD_SUBREAPER);

    show("GET_THP_DISABLE", prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0));
    show("SET_THP_DISABLE 1", prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0));
    show("GET_THP_DISABLE", prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0));

    show_int("GET_TSC", PR_GET_TSC);
    show("SET_TSC SIGSEGV", prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0));
    show_int("GET_TSC", PR_GET_TSC);
    printf("  rdtsc %s\n", try_rdtsc());
    show("SET_TSC 9", prctl(PR_SET_TSC, 9, 0, 0, 0));
    show("SET_TSC ENABLE", prctl(PR_SET_TSC, PR_TSC_ENABLE, 0, 0, 0));
    show_int("GET_TSC", PR_GET_TSC);
    printf("  rdtsc %s\n", try_rdtsc());
    show("GET_TSC NULL", prctl(PR_GET_TSC, 0, 0, 0, 0));

    show("GET_NO_NEW_PRIVS", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
    show("SET_NO_NEW_PRIVS", prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    show("GET_NO_NEW_PRIVS", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));

    show("GET_SECCOMP", prctl(PR_GET_SECCOMP, 0, 0, 0, 0));
    show("GET_TIMING", prctl(PR_GET_TIMING, 0, 0, 0, 0));
    show("CAPBSET_READ SYS_ADMIN", prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0));
    show("CAP_AMBIENT IS_SET", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_RAW, 0, 0));
    show("GET_SECUREBITS", prctl(PR_GET_SECUREBITS, 0, 0, 0, 0));
    show("GET_SPECULATION_CTRL", prctl(PR_GET_SPECULATION_CTRL, PR_SPEC_STORE_BYPASS, 0, 0, 0));
    show("GET_IO_FLUSHER", prctl(PR_GET_IO_FLUSHER, 0, 0, 0, 0));
    show("GET_MDWE", prctl(PR_GET_MDWE, 0, 0, 0, 0));
    show("GET_FP_MODE", prctl(PR_GET_FP_MODE, 0, 0, 0, 0));
    show_int("GET_UNALIGN", PR_GET_UNALIGN);
    show_int("GET_ENDIAN", PR_GET_ENDIAN);
    show_int("GET_FPEXC", PR_GET_FPEXC);
    show("GET_TAGGED_ADDR_CTRL", prctl(PR_GET_TAGGED_ADDR_CTRL, 0, 0, 0, 0));
    unsigned long shadow = 77;
    show("GET_SHADOW_STACK_STATUS", prctl(PR_GET_SHADOW_STACK_STATUS, &shadow, 0, 0, 0));
    printf("  shadow %lu\n", shadow);
    show("SET_PTRACER ANY", prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0));
    show("option 1000", prctl(1000, 0, 0, 0, 0));

    show("SET_SPECULATION_CTRL", prctl(PR_SET_SPECULATION_CTRL, PR_SPEC_STORE_BYPASS,
                                       PR_SPEC_DISABLE, 0, 0));
    show("GET_SPECULATION_CTRL", prctl(PR_GET_SPECULATION_CTRL, PR_SPEC_STORE_BYPASS, 0, 0, 0));
    /* Last: it cannot be undone. */
    show("SET_MDWE REFUSE_EXEC_GAIN", prctl(PR_SET_MDWE, 1, 0, 0, 0));
    show("GET_MDWE", prctl(PR_GET_MDWE, 0, 0, 0, 0));
    show("SET_MDWE 0", prctl(PR_SET_MDWE, 0, 0, 0, 0));

    /* What the kernel shows for the same state. */
    FILE *status = fopen("/proc/self/status", "r");
    char line[256];
    while (fgets(line, sizeof line, status))
        if (strncmp(line, "NoNewPrivs", 10) == 0 || strncmp(line, "THP_enabled", 11) == 0
            || strncmp(line, "Name", 4) == 0)
            fputs(line, stdout);
    fclose(status);
    return 0;
}
