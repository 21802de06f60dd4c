/*
 * xmalloc: several producer/consumer pairs, each with a queue of its own
 * (the shape of xmalloc-test by Lever and Boreham, as run by
 * mimalloc-bench; this is an independent implementation).
 *
 * The threads form pairs.  In each pair the producer mallocs blocks and
 * the consumer frees them, so every free is a remote free, and all pairs
 * run at once, so the allocator also sees several threads allocating and
 * several freeing concurrently.  Unlike prodcons (one queue shared by all
 * threads), a block always travels between the same two threads.
 *
 * Each pair's queue is a fixed pool of batch slots guarded by the pair's
 * mutex: the producer takes an empty slot, fills it with BATCH pointers
 * without the lock and publishes it; the consumer takes the oldest full
 * slot, checks and frees its blocks without the lock and returns the slot.
 * The slots are static, so the queue itself never calls the allocator.
 *
 * Every block holds a header (size and a random tag) in its first eight
 * bytes and the header's image in its last eight; the consumer checks both
 * before it frees the block.
 *
 * usage: xmalloc [threads [blocks [size]]]
 *   threads  an even number: threads / 2 pairs (default 2)
 *   blocks   blocks over all pairs (default 10000000)
 *   size     block size in bytes, at least 16 (default 64, as
 *            mimalloc-bench runs xmalloc-test); 0: random sizes 16..1024
 *            from each producer's seeded generator
 *
 * stdout: one line "xmalloc threads=T pairs=P size=S blocks=... bytes=...
 * checksum=0x..."; it depends only on the arguments.  stderr: the
 * program's own ns/block and its peak RSS ("vmhwm_kib=N").  A damaged
 * block, a failed malloc or a count mismatch prints a diagnostic and exits
 * with status 1.
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

#define BATCH 128
#define NSLOTS 16 /* per pair: at most NSLOTS * BATCH blocks in flight */
#define MAX_PAIRS 128
#define MIN_SIZE 16
#define RANDOM_MAX_SIZE 1024
#define SIZE_BITS 16
#define SIZE_MASK ((UINT64_C(1) << SIZE_BITS) - 1)

/* Cache-line aligned, like struct pair: the benchmark itself should not
 * add false sharing between producer and consumer or between pairs. */
struct slot {
    unsigned count;
    void *ptrs[BATCH];
} __attribute__((aligned(64)));

struct pair {
    pthread_mutex_t lock;
    pthread_cond_t have_empty;
    pthread_cond_t have_full;
    unsigned empty_stack[NSLOTS];
    unsigned n_empty;
    unsigned full_ring[NSLOTS];
    unsigned full_head, n_full;
    int producer_done;
    struct slot slots[NSLOTS];

    pthread_t producer, consumer;
    unsigned id;
    uint64_t blocks;       /* to produce */
    /* Results, stored once at the end (counted in locals on the way, so
     * that producer and consumer do not share a written cache line). */
    uint64_t made, made_bytes, made_sum;
    uint64_t freed, freed_bytes, freed_sum;
} __attribute__((aligned(64)));

static struct pair pairs[MAX_PAIRS];
static size_t fixed_size = 64; static inline uint64_t trailer_of(uint64_t header)
{
    uint64_t x = ~header;
    return (x << 13) | (x >> 51);
}

static unsigned take_empty(struct pair *q)
{
    pthread_mutex_lock(&q->lock);
    while (q->n_empty == 0)
        pthread_cond_wait(&q->have_empty, &q->lock);
    unsigned s = q->empty_stack[--q->n_empty];
    pthread_mutex_unlock(&q->lock);
    return s;
}

static void publish_full(struct pair *q, unsigned s, int last)
{
    pthread_mutex_lock(&q->lock);
    if (s < NSLOTS) {
        q->full_ring[(q->full_head + q->n_full) % NSLOTS] = s;
        q->n_full++;
    }
    if (last)
        q->producer_done = 1;
    pthread_cond_signal(&q->have_full);
    pthread_mutex_unlock(&q->lock);
}

/* NSLOTS once the producer is done and the queue is drained. */
static unsigned take_full(struct pair *q)
{
    pthread_mutex_lock(&q->lock);
    while (q->n_full == 0 && !q->producer_done)
        pthread_cond_wait(&q->have_full, &q->lock);
    unsigned s = NSLOTS;
    if (q->n_full > 0) {
        s = q->full_ring[q->full_head];
        q->full_head = (q->full_head + 1) % NSLOTS;
        q->n_full--;
    }
    pthread_mutex_unlock(&q->lock);
    return s;
}

static void return_empty(struct pair *q, unsigned s)
{
    pthread_mutex_lock(&q->lock);
    q->empty_stack[q->n_empty++] = s;
    pthread_cond_signal(&q->have_empty);
    pthread_mutex_unlock(&q->lock);
}

static void *producer_main(void *arg)
{
    struct pair *q = arg;
    uint64_t rng = mix64(0x9a1aULL + q->id) | 1;
    uint64_t left = q->blocks;
    uint64_t made = 0, made_bytes = 0, made_sum = 0;

    if (left == 0)
        publish_full(q, NSLOTS, 1);
    while (left > 0) {
        unsigned s = take_empty(q);
        struct slot *sl = &q->slots[s];
        unsigned n = left < BATCH ? (unsigned)left : BATCH;
        for (unsigned i = 0; i < n; i++) {
            uint64_t r = xorshift64s(&rng);
            size_t sz = fixed_size ? fixed_size
                : MIN_SIZE + (size_t)(r % (RANDOM_MAX_SIZE - MIN_SIZE + 1));
            unsigned char *b = malloc(sz);
            if (b == NULL) {
                fprintf(stderr, "xmalloc: producer %u: malloc(%zu) failed: "
                        "%s\n", q->id, sz, strerror(errno));
                bench_die();
            }
            uint64_t header = (r << SIZE_BITS) | sz;
            uint64_t trailer = trailer_of(header);
            memcpy(b, &header, 8);
            memcpy(b + sz - 8, &trailer, 8);
            sl->ptrs[i] = b;
            made_sum += header;
            made_bytes += sz;
        }
        sl->count = n;
        left -= n;
        made += n;
        if (left == 0) {
            q->made = made;
            q->made_bytes = made_bytes;
            q->made_sum = made_sum;
        }
        publish_full(q, s, left == 0);
    }
    return NULL;
}

static void *consumer_main(void *arg)
{
    struct pair *q = arg;
    uint64_t freed = 0, freed_bytes = 0, freed_sum = 0;

    for (;;) {
        unsigned s = take_full(q);
        if (s == NSLOTS)
            break;
        struct slot *sl = &q->slots[s];
        for (unsigned i = 0; i < sl->count; i++) {
            unsigned char *b = sl->ptrs[i];
            uint64_t header, trailer;
            memcpy(&header, b, 8);
            size_t sz = (size_t)(header & SIZE_MASK);
            if (sz < MIN_SIZE ||
                (fixed_size ? sz != fixed_size : sz > RANDOM_MAX_SIZE)) {
                fprintf(stderr, "xmalloc: consumer %u: block %p has a bad "
                        "header %#" PRIx64 "\n", q->id, (void *)b, header);
                bench_die();
            }
            memcpy(&trailer, b + sz - 8, 8);
            if (trailer != trailer_of(header)) {
                fprintf(stderr, "xmalloc: consumer %u: block %p (%zu bytes):"
                        " trailer %#" PRIx64 " want %#" PRIx64 "\n", q->id,
                        (void *)b, sz, trailer, trailer_of(header));
                bench_die();
            }
            freed_sum += header;
            freed_bytes += sz;
            free(b);
        }
        freed += sl->count;
        return_empty(q, s);
    }
    q->freed = freed;
    q->freed_bytes = freed_bytes;
    q->freed_sum = freed_sum;
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: xmalloc [threads [blocks [size]]]\n"
            "  threads: even, 2..%d; size: 0 (random) or 16..65535\n",
            2 * MAX_PAIRS);
    exit(2);
}

int main(int argc, char **argv)
{
    long threads = 2, blocks = 10000000;

    if (argc > 4)
        usage();
    if (argc > 1)
        threads = parse_long(argv[1], 2, 2 * MAX_PAIRS, usage);
    if (argc > 2)
        blocks = parse_long(argv[2], 1, 1L << 40, usage);
    if (argc > 3) {
        fixed_size = (size_t)parse_long(argv[3], 0, (long)SIZE_MASK, usage);
        if (fixed_size != 0 && fixed_size < MIN_SIZE)
            usage();
    }
    if (threads % 2 != 0)
        usage();
    long np = threads / 2;

    for (long i = 0; i < np; i++) {
        struct pair *q = &pairs[i];
        pthread_mutex_init(&q->lock, NULL);
        pthread_cond_init(&q->have_empty, NULL);
        pthread_cond_init(&q->have_full, NULL);
        for (unsigned s = 0; s < NSLOTS; s++)
            q->empty_stack[s] = s;
        q->n_empty = NSLOTS;
        q->id = (unsigned)i;
        q->blocks = (uint64_t)(blocks / np + (i < blocks % np));
    }

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < np; i++) {
        int e = pthread_create(&pairs[i].consumer, NULL, consumer_main,
                               &pairs[i]);
        if (e == 0)
            e = pthread_create(&pairs[i].producer, NULL, producer_main,
                               &pairs[i]);
        if (e) {
            fprintf(stderr, "xmalloc: pthread_create: %s\n", strerror(e));
            return 1;
        }
    }
    for (long i = 0; i < np; i++) {
        pthread_join(pairs[i].producer, NULL);
        pthread_join(pairs[i].consumer, NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);

    uint64_t made = 0, freed = 0, bytes = 0, freed_bytes = 0, sum = 0,
             freed_sum = 0;
    for (long i = 0; i < np; i++) {
        made += pairs[i].made;
        freed += pairs[i].freed;
        bytes += pairs[i].made_bytes;
        freed_bytes += pairs[i].freed_bytes;
        sum += pairs[i].made_sum;
        freed_sum += pairs[i].freed_sum;
    }
    if (made != (uint64_t)blocks || freed != made || freed_bytes != bytes ||
        freed_sum != sum) {
        fprintf(stderr, "xmalloc: %" PRIu64 " blocks made (%ld asked), %"
                PRIu64 " freed; bytes %" PRIu64 "/%" PRIu64 "; header sums %#"
                PRIx64 "/%#" PRIx64 "\n", made, blocks, freed, bytes,
                freed_bytes, sum, freed_sum);
        return 1;
    }

    double ns = elapsed_ns(&t0, &t1);
    printf("xmalloc threads=%ld pairs=%ld size=%zu blocks=%" PRIu64
           " bytes=%" PRIu64 " checksum=%#018" PRIx64 "\n", threads, np,
           fixed_size, made, bytes, mix64(sum));
    fprintf(stderr, "xmalloc: %.2f ns/block (wall) vmhwm_kib=%ld\n",
            ns / (double)made, peak_rss_kib());
    return 0;
}
