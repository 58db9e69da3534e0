/* stamp FILE: appends "<CLOCK_REALTIME seconds.nanoseconds> <line>" to FILE
 * for each line of standard input (one bare stamp if there is none).
 *
 * The event handler of the Serf benchmark (bench/serf/serf_bench.py): the
 * clock is read first, when the agent has just started the handler, so the
 * figure does not include reading the input or writing the file. Much
 * cheaper than `date +%s.%N`, which is a second process per event. */
#include <stdio.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv)
{
    struct timespec ts;
    char line[4096];
    int any = 0;
    FILE *out;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (argc != 2) {
        fprintf(stderr, "usage: stamp FILE\n");
        return 2;
    }
    out = fopen(argv[1], "a");
    if (out == NULL) {
        perror(argv[1]);
        return 1;
    }
    while (fgets(line, sizeof line, stdin) != NULL) {
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] == '\n')
            line[n - 1] = '\0';
        fprintf(out, "%lld.%09ld %s\n", (long long)ts.tv_sec, ts.tv_nsec, line);
        any = 1;
    }
    if (!any)
        fprintf(out, "%lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
    return fclose(out) == 0 ? 0 : 1;
}
