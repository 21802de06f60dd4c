/*
 * rptest: random-size working-set churn with optional cross-thread frees
 * (the shape of rpmalloc's rptest benchmark; this is an independent
 * implementation).
 *
 * Every thread keeps a working set of WORKING_SET block slots.  One
 * iteration of a thread:
 *   1. frees every block that the previous thread (id - 1, wrapping) has
 *      passed to it since its last look;
 *   2. walks its slots in a random order (a random odd stride from a random
 *      start) and releases about half of the occupied ones;
 *   3. walks them again in another random order and fills every empty slot
 *      with a new block of random size in [min, max].
 * So about WORKING_SET / 2 blocks are allocated and released per
 * iteration, lifetimes are geometric, and blocks are freed in an order
 * unrelated to the order they were allocated in.  Sizes are skewed toward
 * the small end: the product of two uniform draws over the range.
 *
 * Releasing a block means freeing it, except that with probability
 * `cross` (per mille) it is pushed instead onto the inbox of the next
 * thread (id + 1, wrapping), which frees it in its step 1: a cross-thread
 * free.  The inbox is a lock-free stack linked through the blocks
 * themselves (a producer pushes with compare-and-swap, the owner takes the
 * whole stack with one exchange), so passing never calls the allocator.
 * When an inbox already holds INBOX_LIMIT blocks (its owner has fallen
 * behind, as happens with more threads than cores) the block is freed
 * locally instead, which bounds the memory in flight.  After all threads
 * are joined, the main thread frees what is left in the inboxes and
 * working sets.
 *
 * Every block holds its header (size and a random tag) at offset 8 and,
 * from 24 bytes up, the header's image in its last eight bytes; word 0 is
 * the header's complement while the block is in a working set and the
 * link while it is in an inbox.  All are checked before each free.  Sizes,
 * tags and the allocation sequence of each thread come from its own seeded
 * generator; who frees which block depends on scheduling, but the sum of
 * the headers freed must equal the sum allocated.
 *
 * usage: rptest [threads [iterations [min [max [cross]]]]]
 *   threads     default 2
 *   iterations  iterations over all threads (default 4000; each thread
 *               does iterations / threads)
 *   min, max    block size range in bytes, 16 <= min <= max <= 16777215
 *               (default 16 and 1000)
 *   cross       per mille of releases passed to the next thread (default
 *               100; 0 disables cross-thread frees)
 *
 * stdout: one line "rptest threads=T iterations=I min=A max=B cross=C
 * allocs=... bytes=... checksum=0x..."; it depends only on the arguments.
 * stderr: the program's own ns per malloc+free and its peak RSS
 * ("vmhwm_kib=N").  A damaged block, a failed malloc or a count mismatch
 * prints a diagnostic and exits with status 1.
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

#define MAX_THREADS 256
#define WORKING_SET 2048 /* power of two */
#define INBOX_LIMIT (4 * WORKING_SET)
#define SIZE_BITS 24
#define SIZE_MASK ((UINT64_C(1) << SIZE_BITS) - 1)

struct inbox {
    unsigned char *head;   /* lock-free stack linked through word 0 */
    unsigned long count;   /* blocks in it, approximately */
    char pad[64 - sizeof(void *) - sizeof(unsigned long)];
};

/* Aligned so that no two threads' data share a cache line. */
struct worker {
    unsigned id;
    uint64_t iterations;
    uint64_t allocs;
    uint64_t bytes;
    uint64_t alloc_sum;
    uint64_t frees;
    uint64_t free_sum;
    unsigned char *slots[WORKING_SET];
} __attribute__((aligned(64)));

static struct inbox inboxes[MAX_THREADS] __attribute__((aligned(64)));
static struct worker workers[MAX_THREADS];
static long nthreads;
static size_t min_size = 16, max_size = 1000;
static unsigned cross_permille = 100;

static inline uint64_t trailer_of(uint64_t header)
{
    uint64_t x = ~header;
    return (x << 29) | (x >> 35);
}

static unsigned char *make_block(struct worker *w, uint64_t r)
{
    uint64_t range = max_size - min_size + 1;
    uint64_t a = (r & 0xffffffff) % range, b = (r >> 32) % range;
    size_t sz = min_size + (size_t)(a * b / range);
    unsigned char *p = malloc(sz);
    if (p == NULL) {
        fprintf(stderr, "rptest: thread %u: malloc(%zu) failed: %s\n", w->id,
                sz, strerror(errno));
        bench_die();
    }
    uint64_t header = (mix64(r) << SIZE_BITS) | sz;
    put_word(p, 0, ~header);
    put_word(p, 8, header);
    if (sz >= 24)
        put_word(p, sz - 8, trailer_of(header));
    w->allocs++;
    w->bytes += sz;
    w->alloc_sum += header;
    return p;
}

/* Check a block and free it.  `linked`: word 0 is an inbox link. */
static void check_free(unsigned char *p, int linked, const char *who,
                       unsigned id, uint64_t *frees, uint64_t *free_sum)
{
    uint64_t header = get_word(p, 8);
    size_t sz = (size_t)(header & SIZE_MASK);
    if (sz < min_size || sz > max_size) {
        fprintf(stderr, "rptest: %s %u: block %p has a bad header %#" PRIx64
                "\n", who, id, (void *)p, header);
        bench_die();
    }
    if (!linked && get_word(p, 0) != ~header) {
        fprintf(stderr, "rptest: %s %u: block %p (%zu bytes): word 0 is %#"
                PRIx64 ", want %#" PRIx64 "\n", who, id, (void *)p, sz,
                get_word(p, 0), ~header);
        bench_die();
    }
    if (sz >= 24 && get_word(p, sz - 8) != trailer_of(header)) {
        fprintf(stderr, "rptest: %s %u: block %p (%zu bytes): trailer %#"
                PRIx64 " want %#" PRIx64 "\n", who, id, (void *)p, sz,
                get_word(p, sz - 8), trailer_of(header));
        bench_die();
    }
    *frees += 1;
    *free_sum += header;
    free(p);
}

/* Check and free every block in inbox `box`. */
static void drain_inbox(struct inbox *box, const char *who, unsigned id,
                        uint64_t *frees, uint64_t *free_sum)
{
    unsigned char *p = __atomic_exchange_n(&box->head, NULL, __ATOMIC_ACQUIRE);
    unsigned long n = 0;
    while (p != NULL) {
        unsigned char *next;
        memcpy(&next, p, sizeof next);
        check_free(p, 1, who, id, frees, free_sum);
        p = next;
        n++;
    }
    if (n)
        __atomic_fetch_sub(&box->count, n, __ATOMIC_RELAXED);
}

static void release(struct worker *w, unsigned char *p, uint64_t r)
{
    if (cross_permille && r % 1000 < cross_permille) {
        struct inbox *box = &inboxes[(w->id + 1) % (unsigned)nthreads];
        if (__atomic_load_n(&box->count, __ATOMIC_RELAXED) < INBOX_LIMIT) {
            /* Check it here too: a damaged block should be blamed on the
             * thread that owned it last. */
            uint64_t header = get_word(p, 8);
            if (get_word(p, 0) != ~header) {
                fprintf(stderr, "rptest: thread %u: block %p: word 0 is %#"
                        PRIx64 ", want %#" PRIx64 "\n", w->id, (void *)p,
                        get_word(p, 0), ~header);
                bench_die();
            }
            __atomic_fetch_add(&box->count, 1, __ATOMIC_RELAXED);
            unsigned char *old = __atomic_load_n(&box->head, __ATOMIC_RELAXED);
            do {
                memcpy(p, &old, sizeof old);
            } while (!__atomic_compare_exchange_n(&box->head, &old, p, 1,
                                                  __ATOMIC_RELEASE,
                                                  __ATOMIC_RELAXED));
            return;
        }
    }
    check_free(p, 0, "thread", w->id, &w->frees, &w->free_sum);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = mix64(0x4970ULL + w->id) | 1;

    bench_wait_start();

    for (uint64_t it = 0; it < w->iterations; it++) {
        drain_inbox(&inboxes[w->id], "thread", w->id, &w->frees,
                    &w->free_sum);

        uint64_t r = xorshift64s(&rng);
        unsigned start = (unsigned)r, stride = (unsigned)(r >> 32) | 1;
        for (unsigned k = 0; k < WORKING_SET; k++) {
            unsigned i = (start + k * stride) & (WORKING_SET - 1);
            uint64_t x = xorshift64s(&rng);
            if (w->slots[i] != NULL && (x >> 63)) {
                release(w, w->slots[i], x);
                w->slots[i] = NULL;
            }
        }

        r = xorshift64s(&rng);
        start = (unsigned)r;
        stride = (unsigned)(r >> 32) | 1;
        for (unsigned k = 0; k < WORKING_SET; k++) {
            unsigned i = (start + k * stride) & (WORKING_SET - 1);
            if (w->slots[i] == NULL)
                w->slots[i] = make_block(w, xorshift64s(&rng));
        }
    }
    return NULL;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: rptest [threads [iterations [min [max [cross]]]]]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    long iterations = 4000;

    nthreads = 2;
    if (argc > 6)
        usage();
    if (argc > 1)
        nthreads = parse_long(argv[1], 1, MAX_THREADS, usage);
    if (argc > 2)
        iterations = parse_long(argv[2], 1, 1L << 40, usage);
    if (argc > 3)
        min_size = (size_t)parse_long(argv[3], 16, (long)SIZE_MASK, usage);
    if (argc > 4)
        max_size = (size_t)parse_long(argv[4], (long)min_size,
                                     (long)SIZE_MASK, usage);
    if (argc > 5)
        cross_permille = (unsigned)parse_long(argv[5], 0, 1000, usage);
    if (min_size > max_size)
        usage();

    for (long t = 0; t < nthreads; t++) {
        workers[t].id = (unsigned)t;
        workers[t].iterations = (uint64_t)(iterations / nthreads);
        if (workers[t].iterations == 0)
            workers[t].iterations = 1;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bench_run_workers("rptest", worker_main, workers, sizeof workers[0], nthreads, 0);

    uint64_t allocs = 0, bytes = 0, alloc_sum = 0, frees = 0, free_sum = 0;
    for (long t = 0; t < nthreads; t++) {
        struct worker *w = &workers[t];
        drain_inbox(&inboxes[t], "main, inbox of thread", (unsigned)t,
                    &frees, &free_sum);
        for (unsigned i = 0; i < WORKING_SET; i++)
            if (w->slots[i] != NULL)
                check_free(w->slots[i], 0, "main, slots of thread",
                           (unsigned)t, &frees, &free_sum);
        allocs += w->allocs;
        bytes += w->bytes;
        alloc_sum += w->alloc_sum;
        frees += w->frees;
        free_sum += w->free_sum;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);

    if (frees != allocs || free_sum != alloc_sum) {
        fprintf(stderr, "rptest: %" PRIu64 " blocks allocated, %" PRIu64
                " freed; header sums %#" PRIx64 " and %#" PRIx64 "\n",
                allocs, frees, alloc_sum, free_sum);
        return 1;
    }

    double ns = elapsed_ns(&t0, &t1);
    printf("rptest threads=%ld iterations=%ld min=%zu max=%zu cross=%u "
           "allocs=%" PRIu64 " bytes=%" PRIu64 " checksum=%#018" PRIx64 "\n",
           nthreads, iterations, min_size, max_size, cross_permille, allocs,
           bytes, mix64(alloc_sum));
    fprintf(stderr, "rptest: %.2f ns per malloc+free (wall) vmhwm_kib=%ld\n",
            ns / (double)allocs, peak_rss_kib());
    return 0;
}
