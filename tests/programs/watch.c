/* Writes to a global and to fields of a heap struct from a few functions,
 * for watchpoint tests, forwards and backwards. Each writing line ends in a
 * "// write: NAME" marker, so a test finds its line number by searching for
 * the marker instead of hard-coding it.
 *
 * g_value: 1 -> 100 (set_global) -> 102, 106 (add_to_global, i = 2, 4)
 *          -> 212 (set_global); counter->hits 0..4, counter->total 10, 30, 60, 100.
 * Exit status 22. */
#include <stdio.h>
#include <stdlib.h>

struct counter {
    char label[8];
    long hits;
    long total;
};

long g_value = 1;

static void set_global(long value)
{
    g_value = value; // write: set_global
}

static void add_to_global(long delta)
{
    g_value += delta; // write: add_to_global
}

static void record_hit(struct counter *c, long amount)
{
    c->hits++; // write: hits
    c->total += amount; // write: total
}

static void step(struct counter *c, int i)
{
    record_hit(c, i * 10);
    if (i % 2 == 0)
        add_to_global(i);
}

int main(void)
{
    struct counter *counter = calloc(1, sizeof *counter);

    set_global(100);
    for (int i = 1; i <= 4; i++)
        step(counter, i);
    set_global(g_value * 2);
    printf("watch: g_value %ld, hits %ld, total %ld\n", g_value, counter->hits, counter->total);
    free(counter);
    return 22;
}
