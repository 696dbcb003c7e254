/* corrupt.c: a value corrupted far from where the damage shows, for
 * examples/find_corruption.py.
 *
 * A sensor keeps its last SAMPLES readings in a ring and a calibration factor
 * right after it. The ring's wrap-around test is off by one (`>` for `>=`), so
 * every (SAMPLES + 1)-th reading lands one past the end of the ring, on the
 * low half of `calibration`. The program notices only at the end, when the
 * report's scale is wrong.
 *
 * The culprit is the line marked "the corrupting write"; the first reading
 * that corrupts is number SAMPLES (counting from 0), the last one number
 * 2 * SAMPLES + 1 of READINGS.
 */
#include <stdio.h>

#define SAMPLES 4
#define READINGS 12
#define CALIBRATION 1000

struct sensor {
    int ring[SAMPLES];
    long calibration; /* must stay CALIBRATION */
};

static struct sensor sensor = { .calibration = CALIBRATION };
static int next_slot;
static int readings_taken;

static void store_reading(int value)
{
    sensor.ring[next_slot] = value; // the corrupting write
    if (++next_slot > SAMPLES) /* should be >= */
        next_slot = 0;
    readings_taken++;
}

static int read_sensor(int n)
{
    return 20 + (n * 7) % 11;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* a write per line, piped or not */
    for (int n = 0; n < READINGS; n++) {
        store_reading(read_sensor(n));
        printf("reading %d stored\n", n);
    }
    if (sensor.calibration != CALIBRATION) {
        printf("report: calibration is %ld, expected %d\n", sensor.calibration, CALIBRATION);
        return 1;
    }
    printf("report: calibrated\n");
    return 0;
}
