/*
 * cache_scratch: passive false sharing (the shape of Hoard's cache-scratch
 * benchmark; this is an independent implementation).
 *
 * The main thread allocates one small object (the object size, default 8
 * bytes) per worker, one right after the other, so that under most
 * allocators they sit next to each other, often on one cache line.  It
 * writes a pattern into each and hands it to its worker.  Each worker
 * checks the pattern and frees the object it was given, then, for its
 * share of the iterations, allocates an object of the same size, writes
 * every byte of it `repetitions` times (read-modify-write through a
 * volatile pointer, so every write really happens), checks the final
 * contents and frees it.
 *
 * An allocator that lets a thread reuse the block it just freed, although
 * the block came from another thread's (here: the main thread's) memory,
 * gives the workers objects on the cache line they were handed together;
 * their writes then bounce that line between the cores and the loop runs
 * many times slower.  An allocator that returns remotely freed blocks to
 * their owner, or carves each thread's objects from memory of its own,
 * keeps the workers' objects apart and the writes run at cache speed.
 *
 * usage: cache_scratch [threads [iterations [repetitions [size]]]]
 *   threads      workers (default 2)
 *   iterations   allocate/write/free rounds over all workers (default
 *                1000; each worker does iterations / threads, at least 1)
 *   repetitions  passes of writes over the object per round (default
 *                100000)
 *   size         object size in bytes (default 8)
 *
 * stdout: one line "cache_scratch threads=T iterations=I repetitions=R
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
    unsigned char *given;  /* the object the main thread allocated */
    size_t size;
    uint64_t iterations;
    uint64_t repetitions;
    uint64_t writes;
    uint64_t checksum;
    int failed;
};


/* The pattern the main thread writes into worker id's handed-over object. */
static inline unsigned char given_byte(unsigned id, size_t k)
{
    return (unsigned char)(0xa5u ^ (id * 37u) ^ (unsigned)(k * 11u));
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const size_t size = w->size;
    const uint64_t reps = w->repetitions;

    bench_wait_start();

    for (size_t k = 0; k < size; k++) {
        if (w->given[k] != given_byte(w->id, k)) {
            fprintf(stderr, "cache_scratch: thread %u: handed-over object "
                    "%p byte %zu is %#x, want %#x\n", w->id,
                    (void *)w->given, k, w->given[k], given_byte(w->id, k));
            w->failed = 1;
            return NULL;
        }
    }
    free(w->given);
    w->given = NULL;

    uint64_t seed = mix64(0xc5c5ULL + w->id);
    uint64_t sum = 0;
    for (uint64_t i = 0; i < w->iterations; i++) {
        unsigned char *p = malloc(size);
        if (p == NULL) {
            fprintf(stderr, "cache_scratch: thread %u: malloc(%zu) failed: "
                    "%s\n", w->id, size, strerror(errno));
            w->failed = 1;
            return NULL;
        }
        const unsigned char base = (unsigned char)(seed >> 56);
        for (size_t k = 0; k < size; k++)
            p[k] = (unsigned char)(base + k);

        volatile unsigned char *v = p;
        for (uint64_t r = 0; r < reps; r++)
            for (size_t k = 0; k < size; k++)
                v[k] = (unsigned char)(v[k] + 1);

        for (size_t k = 0; k < size; k++) {
            unsigned char want = (unsigned char)(base + k + reps);
            if (p[k] != want) {
                fprintf(stderr, "cache_scratch: thread %u iteration %" PRIu64
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
            "usage: cache_scratch [threads [iterations [repetitions [size]]]]\n");
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

    /* One object per worker, allocated back to back by this thread. */
    for (long t = 0; t < threads; t++) {
        struct worker *w = &workers[t];
        w->id = (unsigned)t;
        w->size = (size_t)size;
        w->iterations = (uint64_t)(iterations / threads);
        if (w->iterations == 0)
            w->iterations = 1;
        w->repetitions = (uint64_t)reps;
        w->given = malloc((size_t)size);
        if (w->given == NULL) {
            fprintf(stderr, "cache_scratch: malloc(%ld) failed: %s\n", size,
                    strerror(errno));
            return 1;
        }
        for (long k = 0; k < size; k++)
            w->given[k] = given_byte(w->id, (size_t)k);
    }

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bench_run_workers("cache_scratch", worker_main, workers, sizeof workers[0], threads, 0);
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
    printf("cache_scratch threads=%ld iterations=%ld repetitions=%ld size=%ld "
           "writes=%" PRIu64 " checksum=%#018" PRIx64 "\n", threads,
           iterations, reps, size, writes, checksum);
    fprintf(stderr, "cache_scratch: %.3f ns/write (wall, all threads) "
            "vmhwm_kib=%ld\n", ns / (double)writes, peak_rss_kib());
    return 0;
}
