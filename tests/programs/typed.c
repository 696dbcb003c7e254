/* Globals of the C types retrograde.client decodes from DWARF, for its typed
 * reads: each holds its "before" value until main changes it once, on the
 * line marked "// change: NAME". Exit status 3. */
#include <stdio.h>

enum colour { RED, GREEN = 5, BLUE };

struct point {
    short x;
    int y;
    double weight;
};

typedef unsigned long counter_t;

int g_int = -42;
unsigned char g_byte = 200;
char g_letter = 'q';
double g_ratio = 0.25;
float g_half = 0.5f;
_Bool g_flag = 1;
counter_t g_counter = 1ul << 40;
enum colour g_colour = BLUE;
int g_table[5] = {1, 1, 2, 3, 5};
struct point g_point = {-7, 70000, 1.5};
const char *g_name = "typed";
int *g_pointer = &g_table[2];

int main(void)
{
    g_table[3] = 30; // change: g_table
    g_point.y = -1; // change: g_point
    printf("typed: %d %s\n", g_int, g_name);
    return 3;
}
