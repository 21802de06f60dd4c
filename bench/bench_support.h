/* bench_support.h: helpers shared by the benchmark programs. */
#ifndef GPA_BENCH_SUPPORT_H
#define GPA_BENCH_SUPPORT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Peak resident set of this process image, from /proc/self/status.  The
 * runner prefers it to wait4's ru_maxrss, which also counts the resident
 * size of the (much larger) parent between fork and exec.  -1 if unknown.
 */
static inline long peak_rss_kib(void)
{
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

#endif /* GPA_BENCH_SUPPORT_H */
