/* bench_support.h: helpers shared by the benchmark programs. */
#ifndef GPA_BENCH_SUPPORT_H
#define GPA_BENCH_SUPPORT_H

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/*
 * splitmix64 finalizer: a strong 64-bit mix, used for per-thread seeds and
 * to fold per-thread checksums into the stdout line.
 */
static inline uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* xorshift64*: one stream per state word (the state must not be 0). */
static inline uint64_t xorshift64s(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* A different stream: the state is replaced by mix64 of itself. */
static inline uint64_t splitmix_next(uint64_t *s)
{
    *s = mix64(*s);
    return *s;
}

/* Unaligned 8-byte stores and loads inside a block. */
static inline void put_word(unsigned char *p, size_t off, uint64_t v)
{
    memcpy(p + off, &v, sizeof v);
}

static inline uint64_t get_word(const unsigned char *p, size_t off)
{
    uint64_t v;
    memcpy(&v, p + off, sizeof v);
    return v;
}

/*
 * Fill pattern of alloc_test, churn and larson: the word expected at byte
 * offset off of a block of the given tag and size (the tail word holds its
 * complement).
 */
static inline uint64_t word_pattern(uint64_t tag, size_t size, size_t off)
{
    return tag ^ (off * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)size << 40);
}

/* The tail word; for a block under 16 bytes it is the only word. */
static inline size_t tail_off(size_t size)
{
    return size >= 16 ? size - 8 : 0;
}

/* Pattern bytes past the first word of a block of 9..15 bytes. */
static inline unsigned char odd_byte(uint64_t tag, size_t i)
{
    return (unsigned char)((tag >> ((i & 7) * 8)) ^ (i * 37));
}

/* After a diagnostic on stderr: exit 1 at once, without atexit handlers. */
static inline void bench_die(void)
{
    fflush(stderr);
    _exit(1);
}

/*
 * A decimal argument in [min, max]; anything else calls usage(), which
 * does not return.
 */
static inline long parse_long(const char *s, long min, long max,
                              void (*usage)(void))
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        usage();
    return v;
}

/*
 * A work scale: a number in (0, 1e6]; anything else calls usage(), which
 * does not return.
 */
static inline double parse_scale(const char *s, void (*usage)(void))
{
    char *end;
    double v = strtod(s, &end);
    if (*end != '\0' || !(v > 0.0) || v > 1e6)
        usage();
    return v;
}

/* Nanoseconds from t0 to t1 (CLOCK_MONOTONIC readings). */
static inline double elapsed_ns(const struct timespec *t0,
                                const struct timespec *t1)
{
    return (double)(t1->tv_sec - t0->tv_sec) * 1e9 +
           (double)(t1->tv_nsec - t0->tv_nsec);
}

/*
 * Worker threads that start together.  bench_run_workers runs fn on each of
 * `count` items lying `stride` bytes apart from `items`: on the calling
 * thread when there is one item and `inline_one` is set, else one thread
 * each.  Every fn begins with bench_wait_start(), which holds the threads
 * until all of them exist (and does nothing without threads).  A thread
 * that cannot be made ends the program with a diagnostic naming `prog`.
 */
struct bench_start {
    pthread_barrier_t barrier;
    int used;
};

static inline struct bench_start *bench_start_state(void)
{
    static struct bench_start state;
    return &state;
}

static inline void bench_wait_start(void)
{
    struct bench_start *start = bench_start_state();
    if (start->used)
        pthread_barrier_wait(&start->barrier);
}

static inline void bench_run_workers(const char *prog, void *(*fn)(void *),
                                     void *items, size_t stride, long count,
                                     int inline_one)
{
    if (count == 1 && inline_one) {
        fn(items);
        return;
    }
    struct bench_start *start = bench_start_state();
    pthread_t *threads = calloc((size_t)count, sizeof *threads);
    if (threads == NULL ||
        pthread_barrier_init(&start->barrier, NULL, (unsigned)count)) {
        fprintf(stderr, "%s: cannot set up %ld threads\n", prog, count);
        bench_die();
    }
    start->used = 1;
    for (long t = 0; t < count; t++) {
        int e = pthread_create(&threads[t], NULL, fn,
                               (char *)items + (size_t)t * stride);
        if (e != 0) {
            fprintf(stderr, "%s: pthread_create: %s\n", prog, strerror(e));
            bench_die();
        }
    }
    for (long t = 0; t < count; t++)
        pthread_join(threads[t], NULL);
    pthread_barrier_destroy(&start->barrier);
    start->used = 0;
    free(threads);
}

#endif /* GPA_BENCH_SUPPORT_H */
