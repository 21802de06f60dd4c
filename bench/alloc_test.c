/*
 * alloc_test: mixed-size random-order allocation with a window of live
 * blocks per thread.
 *
 * The shape follows the "alloc-test" benchmark of mimalloc-bench (from the
 * node-dot-cpp allocator tests): each thread keeps a bounded set of live
 * blocks whose sizes come from a distribution that is mostly small but
 * reaches into tens of kilobytes, and allocates and frees at random, so
 * that blocks die in no particular order and every size class is in play
 * at once.  The code is written from that description only.
 *
 * Each thread owns a window of at most WINDOW (8192) live blocks in a
 * dense table.  Each step either allocates (with probability
 * 1 - live/WINDOW) or frees a randomly chosen live block, so the
 * population wanders around WINDOW/2.  Sizes: 60% 8..128 bytes, 30%
 * 129..512, 8% 513..8192, 2% 8193..65536 (90% at most 512 bytes; about
 * 1.2 KiB on average, so some 5 MiB live per thread).  A new block is
 * touched throughout: an 8-byte word is written at offset 0 and every 64
 * bytes after it (every cache line) and in the last eight bytes, each a
 * function of the block's tag, size and offset (a block of 9..15 bytes: one
 * word, then pattern bytes); all of them are checked before the block is
 * freed.  Threads are independent (no block crosses threads) and start
 * together.
 *
 * usage: alloc_test [scale [threads]]
 *   scale    multiplies the default number of steps per thread (4000000;
 *            fractions allowed)
 *   threads  number of threads (default 1)
 *
 * stdout: one line "alloc_test threads=N steps=... mallocs=... frees=...
 * bytes=... checksum=0x..." that depends only on the arguments.  stderr:
 * the program's own ns per step (wall, all threads) and its peak RSS
 * ("vmhwm_kib=N").  A pattern mismatch or a failed malloc prints a
 * diagnostic to stderr and exits with status 1.
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
#include <unistd.h>

#include "bench_support.h"

#define BASE_STEPS 4000000.0
#define WINDOW 8192
#define MAX_THREADS 256

struct block {
    unsigned char *p;
    size_t size;
    uint64_t tag;
};

struct worker {
    unsigned id;
    uint64_t steps;
    uint64_t rng;
    uint64_t mallocs, frees, bytes, checksum;
    struct block *live; /* WINDOW entries */
};


static inline uint64_t below(uint64_t *s, uint64_t n)
{
    return (xorshift64s(s) >> 11) % n;
}

static size_t pick_size(uint64_t *s)
{
    uint64_t r = below(s, 100);
    if (r < 60)
        return 8 + below(s, 121);      /* 8..128 */
    if (r < 90)
        return 129 + below(s, 384);    /* 129..512 */
    if (r < 98)
        return 513 + below(s, 7680);   /* 513..8192 */
    return 8193 + below(s, 57344);     /* 8193..65536 */
}

static void fill(const struct block *b)
{
    for (size_t off = 0; off + 16 <= b->size; off += 64)
        put_word(b->p, off, word_pattern(b->tag, b->size, off));
    put_word(b->p, tail_off(b->size),
             ~word_pattern(b->tag, b->size, tail_off(b->size)));
    for (size_t i = 8; i < b->size && b->size < 16; i++)
        b->p[i] = odd_byte(b->tag, i);
}

static void bad_word(const struct worker *w, const struct block *b,
                     size_t off, uint64_t got, uint64_t want)
{
    fprintf(stderr, "alloc_test: thread %u: block %p (%zu bytes, tag %#"
            PRIx64 "): word at offset %zu is %#" PRIx64 ", want %#" PRIx64
            "\n", w->id, (void *)b->p, b->size, b->tag, off, got, want);
    _exit(1);
}

static void check_and_free(struct worker *w, const struct block *b)
{
    uint64_t sum = 0;
    for (size_t off = 0; off + 16 <= b->size; off += 64) {
        uint64_t got = get_word(b->p, off);
        uint64_t want = word_pattern(b->tag, b->size, off);
        if (got != want)
            bad_word(w, b, off, got, want);
        sum += got;
    }
    size_t t = tail_off(b->size);
    uint64_t got = get_word(b->p, t);
    uint64_t want = ~word_pattern(b->tag, b->size, t);
    if (got != want)
        bad_word(w, b, t, got, want);
    sum += got >> 1;
    for (size_t i = 8; i < b->size && b->size < 16; i++) {
        if (b->p[i] != odd_byte(b->tag, i)) {
            fprintf(stderr, "alloc_test: thread %u: block %p (%zu bytes, "
                    "tag %#" PRIx64 "): byte %zu is %#x, want %#x\n", w->id,
                    (void *)b->p, b->size, b->tag, i, b->p[i],
                    odd_byte(b->tag, i));
            _exit(1);
        }
    }
    w->checksum = mix64(w->checksum ^ sum);
    free(b->p);
    w->frees++;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct block *live = w->live;
    size_t n = 0;

    bench_wait_start();

    for (uint64_t s = 0; s < w->steps; s++) {
        if (below(&w->rng, WINDOW) >= n) {
            struct block *b = &live[n];
            b->size = pick_size(&w->rng);
            b->tag = xorshift64s(&w->rng);
            b->p = malloc(b->size);
            if (b->p == NULL) {
                fprintf(stderr, "alloc_test: thread %u: malloc(%zu) failed: "
                        "%s\n", w->id, b->size, strerror(errno));
                _exit(1);
            }
            fill(b);
            w->mallocs++;
            w->bytes += b->size;
            n++;
        } else {
            size_t j = below(&w->rng, n);
            check_and_free(w, &live[j]);
            live[j] = live[--n];
        }
    }
    while (n > 0)
        check_and_free(w, &live[--n]);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: alloc_test [scale [threads]]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    double scale = 1.0;
    long threads = 1;

    if (argc > 3)
        usage();
    if (argc > 1) {
        scale = parse_scale(argv[1], usage);
    }
    if (argc > 2) {
        threads = parse_long(argv[2], 1, MAX_THREADS, usage);
    }

    uint64_t steps = (uint64_t)(BASE_STEPS * scale + 0.5);
    if (steps == 0)
        steps = 1;

    struct worker *workers = calloc((size_t)threads, sizeof *workers);
    if (workers == NULL) {
        fprintf(stderr, "alloc_test: out of memory\n");
        return 1;
    }
    for (long t = 0; t < threads; t++) {
        workers[t].id = (unsigned)t;
        workers[t].steps = steps;
        workers[t].rng = mix64(0xa110c7e57ULL + (uint64_t)t) | 1;
        workers[t].live = calloc(WINDOW, sizeof(struct block));
        if (workers[t].live == NULL) {
            fprintf(stderr, "alloc_test: out of memory\n");
            return 1;
        }
    }

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    bench_run_workers("alloc_test", worker_main, workers, sizeof workers[0], threads, 1);

    clock_gettime(CLOCK_MONOTONIC, &t1);

    uint64_t mallocs = 0, frees = 0, bytes = 0, checksum = 0;
    for (long t = 0; t < threads; t++) {
        mallocs += workers[t].mallocs;
        frees += workers[t].frees;
        bytes += workers[t].bytes;
        checksum = mix64(checksum ^ workers[t].checksum);
        free(workers[t].live);
    }
    free(workers);

    if (mallocs != frees) {
        fprintf(stderr, "alloc_test: %" PRIu64 " mallocs but %" PRIu64
                " frees\n", mallocs, frees);
        return 1;
    }

    double ns = elapsed_ns(&t0, &t1);
    printf("alloc_test threads=%ld steps=%" PRIu64 " mallocs=%" PRIu64
           " frees=%" PRIu64 " bytes=%" PRIu64 " checksum=%#018" PRIx64 "\n",
           threads, steps * (uint64_t)threads, mallocs, frees, bytes,
           checksum);
    fprintf(stderr, "alloc_test: %.2f ns/step (wall, all threads) "
            "vmhwm_kib=%ld\n", ns / (double)(steps * (uint64_t)threads),
            peak_rss_kib());
    return 0;
}
