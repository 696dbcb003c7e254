/* A process that forks a child which forks again (for replay -p and reverse
 * execution across a fork):
 *
 *   forktwice (the first process)   visit(1); forks the child; visit(4); waits;
 *                                   exits 3
 *   the child                       visit(2); forks the grandchild; visit(5);
 *                                   waits; exits 5
 *   the grandchild                  visit(3); exits 7
 *
 * visit(who) sets g_who and g_visits: each process writes its own copy.
 */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static int g_who;
static int g_visits;

static void visit(int who)
{
    g_who = who; /* write: g_who */
    g_visits++;
}

static void before_fork(int depth)
{
    printf("forktwice: depth %d about to fork\n", depth);
    fflush(stdout);
}

static void after_fork(int depth, int forked)
{
    printf("forktwice: depth %d forked %s\n", depth, forked > 0 ? "a child" : "nothing");
    fflush(stdout);
}

int main(void)
{
    int status;
    visit(1);
    pid_t child = fork();
    if (child == 0) {
        visit(2);
        int depth = 2;
        before_fork(depth);
        pid_t grandchild = fork();
        if (grandchild == 0) {
            visit(3);
            _exit(7);
        }
        visit(5); /* after: the second fork */
        after_fork(depth, grandchild);
        waitpid(grandchild, &status, 0);
        _exit(5);
    }
    visit(4);
    waitpid(child, &status, 0);
    printf("forktwice: child exited %d, visits %d\n", WEXITSTATUS(status), g_visits);
    return 3;
}
