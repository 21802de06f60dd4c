/*
 * mstress: random sizes, thread churn and block transfer between threads
 * (the shape of mimalloc-bench's mstress, i.e. mimalloc's test-stress;
 * this is an independent implementation).
 *
 * The run is a sequence of rounds.  Each round starts `threads` fresh
 * threads and joins them; the next round starts new ones, so every round
 * the allocator sees threads come and go.  Thread i of a round works on
 * two arrays of block pointers:
 *
 *   - its local array (LOCAL_SLOTS slots), which belongs to the thread
 *     index, not to the thread: the blocks a thread leaves in it when it
 *     exits are adopted by thread i of the next round;
 *   - the transfer array (TRANSFER_SLOTS slots), shared by all threads of
 *     all rounds.
 *
 * Each operation picks a random local slot and, at random:
 *   1/2  allocates a new block into it (freeing the block that was there);
 *   1/4  frees the block in it (if any);
 *   1/4  swaps it atomically with a random transfer slot, so blocks
 *        allocated by one thread end up freed by another, often one of a
 *        later round whose allocating thread has already exited.
 * Sizes are mostly small (16..144 B: 75%; up to 528 B: 20%), sometimes
 * medium (up to 8 KiB: 4%; up to 64 KiB: 0.9%) and occasionally large
 * (64 KiB..1 MiB: 0.1%).
 * On exit a thread frees about 3/4 of its local blocks and leaves the rest
 * to its successor; after the last round the main thread frees everything
 * still held.
 *
 * Every block carries a header (size and a random tag) in its first eight
 * bytes, the header's image in its last eight and, in a block of several
 * pages, a word in every page; all are checked before the block is freed.
 * Each thread draws from its own seeded generator and the choices never
 * depend on what the transfer array returned, so the number of
 * allocations, their sizes and tags depend only on the arguments; which
 * thread frees which block does not.
 *
 * usage: mstress [threads [rounds [ops]]]
 *   threads  threads per round (default 4)
 *   rounds   rounds (default 20)
 *   ops      operations per round over all threads (default 400000;
 *            each thread does ops / threads)
 *
 * stdout: one line "mstress threads=T rounds=R ops=... allocs=... bytes=...
 * checksum=0x..."; the checksum sums the headers of all blocks (and is
 * checked against the sum over the frees).  stderr: the program's own
 * ns/op and its peak RSS ("vmhwm_kib=N").  A damaged block, a failed
 * malloc or a count mismatch prints a diagnostic and exits with status 1.
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
#define LOCAL_SLOTS 512     /* power of two */
#define TRANSFER_SLOTS 1024 /* power of two */
#define PAGE 4096
#define SIZE_BITS 24        /* sizes below 16 MiB */
#define SIZE_MASK ((UINT64_C(1) << SIZE_BITS) - 1)

/* Aligned so that no two threads' counters share a cache line. */
struct worker {
    pthread_t thread;
    unsigned id;
    unsigned round;
    uint64_t ops;
    /* results of the round, read by main after the join */
    uint64_t allocs;
    uint64_t bytes;
    uint64_t alloc_sum;
    uint64_t frees;
    uint64_t free_sum;
} __attribute__((aligned(64)));

static unsigned char *local_blocks[MAX_THREADS][LOCAL_SLOTS];
static unsigned char *transfer[TRANSFER_SLOTS];

static inline uint64_t trailer_of(uint64_t header)
{
    uint64_t x = ~header;
    return (x << 23) | (x >> 41);
}

static inline uint64_t page_word(uint64_t header, size_t page)
{
    return mix64(header + page);
}

static size_t pick_size(uint64_t r)
{
    unsigned c = (unsigned)(r % 10000);
    r >>= 16;
    if (c < 7500)
        return 16 + (size_t)(r % 129);                    /* 16..144 */
    if (c < 9500)
        return 16 + (size_t)(r % 513);                    /* 16..528 */
    if (c < 9900)
        return 529 + (size_t)(r % (8192 - 529 + 1));      /* ..8 KiB */
    if (c < 9990)
        return 8193 + (size_t)(r % (65536 - 8193 + 1));   /* ..64 KiB */
    return 65537 + (size_t)(r % ((1 << 20) - 65537 + 1)); /* ..1 MiB */
}

static unsigned char *make_block(struct worker *w, uint64_t r)
{
    size_t sz = pick_size(r);
    unsigned char *b = malloc(sz);
    if (b == NULL) {
        fprintf(stderr, "mstress: thread %u round %u: malloc(%zu) failed: "
                "%s\n", w->id, w->round, sz, strerror(errno));
        bench_die();
    }
    uint64_t header = (mix64(r) << SIZE_BITS) | sz;
    uint64_t trailer = trailer_of(header);
    memcpy(b, &header, 8);
    memcpy(b + sz - 8, &trailer, 8);
    for (size_t pg = 1; pg * PAGE + 16 <= sz - 8; pg++) {
        uint64_t v = page_word(header, pg);
        memcpy(b + pg * PAGE + 8, &v, 8);
    }
    w->allocs++;
    w->bytes += sz;
    w->alloc_sum += header;
    return b;
}

/* Check a block and free it; `who` names the freeing thread for messages. */
static void release(unsigned char *b, const char *who, unsigned id,
                    uint64_t *frees, uint64_t *free_sum)
{
    uint64_t header, trailer;
    memcpy(&header, b, 8);
    size_t sz = (size_t)(header & SIZE_MASK);
    if (sz < 16 || sz > (1 << 20)) {
        fprintf(stderr, "mstress: %s %u: block %p has a bad header %#"
                PRIx64 "\n", who, id, (void *)b, header);
        bench_die();
    }
    memcpy(&trailer, b + sz - 8, 8);
    if (trailer != trailer_of(header)) {
        fprintf(stderr, "mstress: %s %u: block %p (%zu bytes): trailer %#"
                PRIx64 " want %#" PRIx64 "\n", who, id, (void *)b, sz,
                trailer, trailer_of(header));
        bench_die();
    }
    for (size_t pg = 1; pg * PAGE + 16 <= sz - 8; pg++) {
        uint64_t v;
        memcpy(&v, b + pg * PAGE + 8, 8);
        if (v != page_word(header, pg)) {
            fprintf(stderr, "mstress: %s %u: block %p (%zu bytes): page %zu "
                    "word %#" PRIx64 " want %#" PRIx64 "\n", who, id,
                    (void *)b, sz, pg, v, page_word(header, pg));
            bench_die();
        }
    }
    *frees += 1;
    *free_sum += header;
    free(b);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    unsigned char **local = local_blocks[w->id];
    uint64_t rng = mix64(((uint64_t)w->round << 32) ^ w->id ^ 0x57e55ULL) | 1;

    for (uint64_t i = 0; i < w->ops; i++) {
        uint64_t r = xorshift64s(&rng);
        unsigned kind = (unsigned)(r & 3);
        unsigned slot = (unsigned)(r >> 2) & (LOCAL_SLOTS - 1);
        if (kind < 2) {
            unsigned char *old = local[slot];
            local[slot] = make_block(w, xorshift64s(&rng));
            if (old != NULL)
                release(old, "thread", w->id, &w->frees, &w->free_sum);
        } else if (kind == 2) {
            if (local[slot] != NULL) {
                release(local[slot], "thread", w->id, &w->frees,
                        &w->free_sum);
                local[slot] = NULL;
            }
        } else {
            unsigned t = (unsigned)(r >> 32) & (TRANSFER_SLOTS - 1);
            local[slot] = __atomic_exchange_n(&transfer[t], local[slot],
                                              __ATOMIC_ACQ_REL);
        }
    }

    /* Leave about a quarter of the local blocks to the next round. */
    for (unsigned s = 0; s < LOCAL_SLOTS; s++) {
        uint64_t r = xorshift64s(&rng);
        if ((r & 3) != 0 && local[s] != NULL) {
            release(local[s], "thread", w->id, &w->frees, &w->free_sum);
            local[s] = NULL;
        }
    }
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: mstress [threads [rounds [ops]]]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    long threads = 4, rounds = 20, ops = 400000;

    if (argc > 4)
        usage();
    if (argc > 1)
        threads = parse_long(argv[1], 1, MAX_THREADS, usage);
    if (argc > 2)
        rounds = parse_long(argv[2], 1, 1L << 30, usage);
    if (argc > 3)
        ops = parse_long(argv[3], 1, 1L << 40, usage);

    static struct worker workers[MAX_THREADS];
    uint64_t allocs = 0, bytes = 0, alloc_sum = 0, frees = 0, free_sum = 0;
    uint64_t total_ops = 0;

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    for (long round = 0; round < rounds; round++) {
        for (long t = 0; t < threads; t++) {
            struct worker *w = &workers[t];
            memset(w, 0, sizeof *w);
            w->id = (unsigned)t;
            w->round = (unsigned)round;
            w->ops = (uint64_t)(ops / threads);
            int e = pthread_create(&w->thread, NULL, worker_main, w);
            if (e) {
                fprintf(stderr, "mstress: pthread_create: %s\n", strerror(e));
                return 1;
            }
        }
        for (long t = 0; t < threads; t++) {
            struct worker *w = &workers[t];
            pthread_join(w->thread, NULL);
            allocs += w->allocs;
            bytes += w->bytes;
            alloc_sum += w->alloc_sum;
            frees += w->frees;
            free_sum += w->free_sum;
            total_ops += w->ops;
        }
    }

    /* Free what is left: survivors in the local arrays and transfers. */
    for (long t = 0; t < threads; t++) {
        for (unsigned s = 0; s < LOCAL_SLOTS; s++) {
            if (local_blocks[t][s] != NULL) {
                release(local_blocks[t][s], "main, local slots of thread",
                        (unsigned)t, &frees, &free_sum);
                local_blocks[t][s] = NULL;
            }
        }
    }
    for (unsigned s = 0; s < TRANSFER_SLOTS; s++) {
        if (transfer[s] != NULL) {
            release(transfer[s], "main, transfer slot", s, &frees, &free_sum);
            transfer[s] = NULL;
        }
    }

    clock_gettime(CLOCK_MONOTONIC, &t1);

    if (frees != allocs || free_sum != alloc_sum) {
        fprintf(stderr, "mstress: %" PRIu64 " blocks allocated, %" PRIu64
                " freed; header sums %#" PRIx64 " and %#" PRIx64 "\n",
                allocs, frees, alloc_sum, free_sum);
        return 1;
    }

    double ns = elapsed_ns(&t0, &t1);
    printf("mstress threads=%ld rounds=%ld ops=%" PRIu64 " allocs=%" PRIu64
           " bytes=%" PRIu64 " checksum=%#018" PRIx64 "\n", threads, rounds,
           total_ops, allocs, bytes, mix64(alloc_sum));
    fprintf(stderr, "mstress: %.2f ns/op (wall) vmhwm_kib=%ld\n",
            ns / (double)total_ops, peak_rss_kib());
    return 0;
}
