/*
 * simple_loop: single-threaded tight small-object malloc/free loop.
 *
 * Each "variant" is a (size, batch, order) triple.  One round of a variant
 * allocates a batch of K blocks, writes a tag into the first and the last
 * eight bytes of every block, then checks the tags and frees the blocks,
 * either in allocation order (FIFO) or in reverse (LIFO).  Sizes are 16, 32,
 * 64, 128 and 256 bytes plus a mixed variant (16..256 from a fixed table);
 * K is 100 and 1000.  Every variant performs the same number of malloc
 * calls, so each weighs the same in the total.
 *
 * With a thread count N > 1, N threads run the whole sequence
 * independently (each with its own batch array), started together.
 *
 * usage: simple_loop [scale [threads]]
 *   scale    multiplies the default amount of work (a positive number,
 *            fractions allowed; 1 takes roughly one second under glibc)
 *   threads  number of independent threads (default 1)
 *
 * stdout: one line "simple_loop threads=N ops=... checksum=0x..."; ops
 * counts malloc plus free calls over all threads.  The checksum depends
 * only on the arguments, not on the allocator.  A tag mismatch or a failed
 * malloc prints a diagnostic to stderr and exits with status 1.  The
 * program's own ns/op and its peak RSS ("vmhwm_kib=N", from VmHWM) go to
 * stderr; the runner does its own timing.
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

/* malloc calls per variant per thread at scale 1. */
#define BASE_MALLOCS_PER_VARIANT 2000000.0

#define MAX_BATCH 1000
#define MIXED_TABLE 4096 /* power of two */

enum order { ORDER_FIFO, ORDER_LIFO };

struct variant {
    size_t size;    /* 0: mixed */
    unsigned batch;
    enum order order;
};

static const size_t sizes[] = { 16, 32, 64, 128, 256, 0 };
static const unsigned batches[] = { 100, 1000 };

static unsigned short mixed_sizes[MIXED_TABLE];

struct worker {
    unsigned id;
    uint64_t rounds_per_k[MAX_BATCH + 1]; /* indexed by batch size */
    uint64_t ops;
    uint64_t checksum;
    int failed;
};


static void fill_mixed_table(void)
{
    uint64_t s = 12345;
    for (unsigned i = 0; i < MIXED_TABLE; i++) {
        s = mix64(s);
        /* 16..256 inclusive */
        mixed_sizes[i] = (unsigned short)(16 + s % 241);
    }
}

/*
 * Run one variant.  Returns 0 on success, -1 after printing a diagnostic.
 * The tag of block i in round r is a cheap function of (seed, r, i); the
 * trailer is its complement, so both ends of the block are checked.
 */
static int run_variant(struct worker *w, const struct variant *v,
                       unsigned vidx, unsigned char **slots)
{
    const unsigned k = v->batch;
    const uint64_t rounds = w->rounds_per_k[k];
    const uint64_t seed = mix64(((uint64_t)w->id << 32) | vidx);
    uint64_t sum = 0;

    for (uint64_t r = 0; r < rounds; r++) {
        const uint64_t rbase = seed + r * 0x100000001b3ULL;

        for (unsigned i = 0; i < k; i++) {
            size_t sz = v->size ? v->size
                                : mixed_sizes[(i + r) & (MIXED_TABLE - 1)];
            unsigned char *p = malloc(sz);
            if (p == NULL) {
                fprintf(stderr, "simple_loop: malloc(%zu) failed: %s\n", sz,
                        strerror(errno));
                return -1;
            }
            uint64_t tag = rbase ^ ((uint64_t)i * 0x9e3779b97f4a7c15ULL);
            put_word(p, 0, tag);
            put_word(p, sz - 8, ~tag ^ sz);
            slots[i] = p;
        }

        for (unsigned n = 0; n < k; n++) {
            unsigned i = v->order == ORDER_FIFO ? n : k - 1 - n;
            size_t sz = v->size ? v->size
                                : mixed_sizes[(i + r) & (MIXED_TABLE - 1)];
            unsigned char *p = slots[i];
            uint64_t tag = rbase ^ ((uint64_t)i * 0x9e3779b97f4a7c15ULL);
            uint64_t head = get_word(p, 0);
            uint64_t tail = get_word(p, sz - 8);
            if (head != tag || tail != (~tag ^ sz)) {
                fprintf(stderr,
                        "simple_loop: thread %u variant size=%zu batch=%u %s "
                        "round %" PRIu64 " block %u (%p, %zu bytes): "
                        "head %#" PRIx64 " want %#" PRIx64 ", "
                        "tail %#" PRIx64 " want %#" PRIx64 "\n",
                        w->id, v->size, k,
                        v->order == ORDER_FIFO ? "fifo" : "lifo", r, i,
                        (void *)p, sz, head, tag, tail, ~tag ^ sz);
                return -1;
            }
            sum += head + (tail >> 1);
            free(p);
        }
    }

    w->ops += 2 * rounds * k;
    w->checksum = mix64(w->checksum ^ sum);
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    unsigned char *slots[MAX_BATCH];
    unsigned vidx = 0;

    bench_wait_start();

    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
            for (int o = ORDER_FIFO; o <= ORDER_LIFO; o++) {
                struct variant v = { sizes[s], batches[b], (enum order)o };
                if (run_variant(w, &v, vidx++, slots) != 0) {
                    w->failed = 1;
                    return NULL;
                }
            }
        }
    }
    return NULL;
}


static void usage(void)
{
    fprintf(stderr, "usage: simple_loop [scale [threads]]\n");
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
        threads = parse_long(argv[2], 1, 1024, usage);
    }

    fill_mixed_table();

    struct worker *workers = calloc((size_t)threads, sizeof *workers);
    if (workers == NULL) {
        fprintf(stderr, "simple_loop: out of memory\n");
        return 1;
    }
    for (long t = 0; t < threads; t++) {
        workers[t].id = (unsigned)t;
        for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
            unsigned k = batches[b];
            uint64_t rounds =
                (uint64_t)(BASE_MALLOCS_PER_VARIANT * scale / k + 0.5);
            workers[t].rounds_per_k[k] = rounds ? rounds : 1;
        }
    }

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    bench_run_workers("simple_loop", worker_main, workers, sizeof workers[0], threads, 1);

    clock_gettime(CLOCK_MONOTONIC, &t1);

    uint64_t ops = 0, checksum = 0;
    int failed = 0;
    for (long t = 0; t < threads; t++) {
        ops += workers[t].ops;
        checksum = mix64(checksum ^ workers[t].checksum);
        failed |= workers[t].failed;
    }
    free(workers);
    if (failed)
        return 1;

    double ns = elapsed_ns(&t0, &t1);
    printf("simple_loop threads=%ld ops=%" PRIu64 " checksum=%#018" PRIx64
           "\n", threads, ops, checksum);
    fprintf(stderr, "simple_loop: %.2f ns/op (wall, all threads) "
            "vmhwm_kib=%ld\n", ns / (double)ops, peak_rss_kib());
    return 0;
}
