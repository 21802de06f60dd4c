/*
 * cache_thrash: active false sharing (the shape of Hoard's cache-thrash
 * benchmark; this is an independent implementation).
 *
 * Every worker, started together with the others, repeatedly allocates a
 * small object (default 8 bytes), writes every byte of it `repetitions`
 * times (read-modify-write through a volatile pointer, so every write
 * really happens), checks the final contents and frees it.  No object ever
 * moves between threads.
 *
 * An allocator that serves concurrent threads from one shared pool can
 * hand two threads objects on the same cache line at the same time; their
 * writes then bounce the line between the cores and the loop runs many
 * times slower.  An allocator with per-thread (or per-CPU) memory keeps
 * the threads' objects on different lines and the writes run at cache
 * speed.  Unlike cache_scratch, the allocator does not even have to be
 * handed a remote block to get this wrong.
 *
 * usage: cache_thrash [threads [iterations [repetitions [size]]]]
 *   threads      workers (default 2)
 *   iterations   allocate/write/free rounds over all workers (default
 *                1000; each worker does iterations / threads, at least 1)
 *   repetitions  passes of writes over the object per round (default
 *                100000)
 *   size         object size in bytes (default 8)
 *
 * stdout: one line "cache_thrash threads=T iterations=I repetitions=R
 * size=S writes=... checksum=0x..."; the checksum folds in the final
 * contents of every object, so it depends only on the arguments.  stderr:
 * the program's own ns per write and its peak RSS ("vmhwm_kib=N").  A
 * wrong byte or a failed malloc prints a diagnostic and exits with status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_support.h"

#define MAX_THREADS 1024
#define MAX_SIZE (1L << 20)

struct worker {
    unsigned id;
    size_t size;
    uint64_t iterations;
    uint64_t repetitions;
    uint64_t writes;
    uint64_t checksum;
    int failed;
};


static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const size_t size = w->size;
    const uint64_t reps = w->repetitions;
    uint64_t seed = mix64(0x7a7aULL + w->id);
    uint64_t sum = 0;

    bench_wait_start();

    for (uint64_t i = 0; i < w->iterations; i++) {
        unsigned char *p = malloc(size);
        if (p == NULL) {
            fprintf(stderr, "cache_thrash: thread %u: malloc(%zu) failed: "
                    "%s\n", w->id, size, strerror(errno));
            w->failed = 1;
            return NULL;
        }
        const unsigned char base = (unsigned char)(seed >> 56);
        for (size_t k = 0; k < size; k++)
            p[k] = (unsigned char)(base ^ (k * 7));

        volatile unsigned char *v = p;
        for (uint64_t r = 0; r < reps; r++)
            for (size_t k = 0; k < size; k++)
                v[k] = (unsigned char)(v[k] + 3);

        for (size_t k = 0; k < size; k++) {
            unsigned char want =
                (unsigned char)((unsigned char)(base ^ (k * 7)) + 3 * reps);
            if (p[k] != want) {
                fprintf(stderr, "cache_thrash: thread %u iteration %" PRIu64
                        ": object %p byte %zu is %#x, want %#x\n", w->id, i,
                        (void *)p, k, p[k], want);
                w->failed = 1;
                free(p);
                return NULL;
            }
            sum = sum * 31 + p[k];
        }
        free(p);
        seed = mix64(seed);
    }
    w->writes = w->iterations * reps * size;
    w->checksum = mix64(sum ^ w->id);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: cache_thrash [threads [iterations [repetitions [size]]]]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    long threads = 2, iterations = 1000, reps = 100000, size = 8;

    if (argc > 5)
        usage();
    if (argc > 1)
        threads = parse_long(argv[1], 1, MAX_THREADS, usage);
    if (argc > 2)
        iterations = parse_long(argv[2], 1, 1L << 40, usage);
    if (argc > 3)
        reps = parse_long(argv[3], 1, 1L << 40, usage);
    if (argc > 4)
        size = parse_long(argv[4], 1, MAX_SIZE, usage);

    static struct worker workers[MAX_THREADS];
    for (long t = 0; t < threads; t++) {
        struct worker *w = &workers[t];
        w->id = (unsigned)t;
        w->size = (size_t)size;
        w->iterations = (uint64_t)(iterations / threads);
        if (w->iterations == 0)
            w->iterations = 1;
        w->repetitions = (uint64_t)reps;
    }

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bench_run_workers("cache_thrash", worker_main, workers, sizeof workers[0], threads, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);

    uint64_t writes = 0, checksum = 0;
    int failed = 0;
    for (long t = 0; t < threads; t++) {
        failed |= workers[t].failed;
        writes += workers[t].writes;
        checksum = mix64(checksum ^ workers[t].checksum);
    }
    if (failed)
        return 1;

    double ns = elapsed_ns(&t0, &t1);
    printf("cache_thrash threads=%ld iterations=%ld repetitions=%ld size=%ld "
           "writes=%" PRIu64 " checksum=%#018" PRIx64 "\n", threads,
           iterations, reps, size, writes, checksum);
    fprintf(stderr, "cache_thrash: %.3f ns/write (wall, all threads) "
            "vmhwm_kib=%ld\n", ns / (double)writes, peak_rss_kib());
    return 0;
}
