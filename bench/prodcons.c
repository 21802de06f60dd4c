/*
 * prodcons: producer/consumer cross-thread free benchmark.
 *
 * Producers malloc blocks of pseudo-random size 16..512 bytes (a seeded
 * generator per producer, so the sequence is deterministic), write a header
 * word (size and a tag) at the start and a trailer word at the end of each
 * block, and hand the pointers to the consumers in batches through a
 * bounded queue.  Consumers check header and trailer and free the blocks,
 * so nearly every free happens on a thread other than the one that
 * allocated the block.
 *
 * The queue is a fixed pool of batch slots guarded by one mutex: a producer
 * takes an empty slot, fills it with BATCH pointers without holding the
 * lock and publishes it; a consumer takes a full slot, drains it without
 * the lock and returns it empty.  The lock is taken twice per BATCH blocks,
 * so the queue costs little next to malloc and free.  The slots are static:
 * the queue itself never calls the allocator.
 *
 * usage: prodcons [blocks [producers [consumers]]]
 *   blocks     total blocks over all producers (default 10000000)
 *   producers  default 1
 *   consumers  default 1
 *
 * stdout: one line "prodcons producers=P consumers=C blocks=... bytes=...
 * checksum=0x..."; the checksum depends only on the arguments.  stderr:
 * the program's own ns/block and its peak RSS ("vmhwm_kib=N").  A bad
 * header or trailer, a failed malloc or a count mismatch prints a
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

#include "bench_support.h"

/* Compile-time knobs (-DBATCH=..., -DNSLOTS=...) for experiments.  A 2-core
 * machine shows this benchmark bimodal whatever NSLOTS is: depending on
 * whether the scheduler runs both threads at once or alternates them on
 * one CPU, glibc takes between about 70 and 200 ns per block. */
#ifndef BATCH
#define BATCH 256
#endif
#ifndef NSLOTS
#define NSLOTS 64 /* at most NSLOTS * BATCH blocks in flight */
#endif
#define MIN_SIZE 16
#define MAX_SIZE 512
#define MAX_THREADS 256

struct slot {
    unsigned count;
    unsigned producer;
    void *ptrs[BATCH];
};

static struct slot slots[NSLOTS];

/* Both index stacks/rings hold slot numbers; guarded by `lock`. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t have_empty = PTHREAD_COND_INITIALIZER;
static pthread_cond_t have_full = PTHREAD_COND_INITIALIZER;
static unsigned empty_stack[NSLOTS];
static unsigned n_empty;
static unsigned full_ring[NSLOTS];
static unsigned full_head, n_full;
static unsigned producers_left;
static int abort_all; /* a consumer found corruption: everyone stops */

struct producer {
    pthread_t thread;
    unsigned id;
    uint64_t blocks;
    int failed;
};

struct consumer {
    pthread_t thread;
    unsigned id;
    uint64_t blocks;
    uint64_t bytes;
    uint64_t checksum; /* a plain sum: independent of who frees what */
    int failed;
};

/*
 * Header: low 16 bits the size, the rest a tag.  Trailer (the last eight
 * bytes, possibly unaligned): the header's complement rotated by 17.
 */
static inline uint64_t trailer_of(uint64_t header)
{
    uint64_t x = ~header;
    return (x << 17) | (x >> 47);
}

static unsigned take_empty(void)
{
    pthread_mutex_lock(&lock);
    while (n_empty == 0 && !abort_all)
        pthread_cond_wait(&have_empty, &lock);
    unsigned s = abort_all ? NSLOTS : empty_stack[--n_empty];
    pthread_mutex_unlock(&lock);
    return s;
}

static void publish_full(unsigned s)
{
    pthread_mutex_lock(&lock);
    full_ring[(full_head + n_full) % NSLOTS] = s;
    n_full++;
    pthread_cond_signal(&have_full);
    pthread_mutex_unlock(&lock);
}

/* Returns NSLOTS when the producers are done and the queue is drained. */
static unsigned take_full(void)
{
    pthread_mutex_lock(&lock);
    while (n_full == 0 && producers_left > 0 && !abort_all)
        pthread_cond_wait(&have_full, &lock);
    unsigned s = NSLOTS;
    if (n_full > 0 && !abort_all) {
        s = full_ring[full_head];
        full_head = (full_head + 1) % NSLOTS;
        n_full--;
    }
    pthread_mutex_unlock(&lock);
    return s;
}

static void return_empty(unsigned s)
{
    pthread_mutex_lock(&lock);
    empty_stack[n_empty++] = s;
    pthread_cond_signal(&have_empty);
    pthread_mutex_unlock(&lock);
}

static void set_abort(void)
{
    pthread_mutex_lock(&lock);
    abort_all = 1;
    pthread_cond_broadcast(&have_empty);
    pthread_cond_broadcast(&have_full);
    pthread_mutex_unlock(&lock);
}

static void producer_done(void)
{
    pthread_mutex_lock(&lock);
    producers_left--;
    if (producers_left == 0)
        pthread_cond_broadcast(&have_full);
    pthread_mutex_unlock(&lock);
}

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    uint64_t rng = mix64(0x5eedULL + p->id) | 1;
    uint64_t left = p->blocks;

    while (left > 0) {
        unsigned s = take_empty();
        if (s == NSLOTS)
            break; /* aborted */
        struct slot *sl = &slots[s];
        unsigned n = left < BATCH ? (unsigned)left : BATCH;
        for (unsigned i = 0; i < n; i++) {
            uint64_t r = xorshift64s(&rng);
            size_t sz = MIN_SIZE + (size_t)(r % (MAX_SIZE - MIN_SIZE + 1));
            unsigned char *b = malloc(sz);
            if (b == NULL) {
                fprintf(stderr, "prodcons: producer %u: malloc(%zu) failed: "
                        "%s\n", p->id, sz, strerror(errno));
                p->failed = 1;
                sl->count = i;
                sl->producer = p->id;
                publish_full(s); /* let the consumer free what we made */
                set_abort();
                producer_done();
                return NULL;
            }
            uint64_t header = (r & ~(uint64_t)0xffff) | sz;
            uint64_t trailer = trailer_of(header);
            memcpy(b, &header, sizeof header);
            memcpy(b + sz - 8, &trailer, sizeof trailer);
            sl->ptrs[i] = b;
        }
        sl->count = n;
        sl->producer = p->id;
        publish_full(s);
        left -= n;
    }
    producer_done();
    return NULL;
}

static void *consumer_main(void *arg)
{
    struct consumer *c = arg;

    for (;;) {
        unsigned s = take_full();
        if (s == NSLOTS)
            break;
        struct slot *sl = &slots[s];
        for (unsigned i = 0; i < sl->count; i++) {
            unsigned char *b = sl->ptrs[i];
            uint64_t header, trailer;
            memcpy(&header, b, sizeof header);
            size_t sz = (size_t)(header & 0xffff);
            if (sz < MIN_SIZE || sz > MAX_SIZE) {
                fprintf(stderr, "prodcons: consumer %u: block %p from "
                        "producer %u has a bad header %#" PRIx64 "\n",
                        c->id, (void *)b, sl->producer, header);
                c->failed = 1;
                set_abort();
                return NULL;
            }
            memcpy(&trailer, b + sz - 8, sizeof trailer);
            if (trailer != trailer_of(header)) {
                fprintf(stderr, "prodcons: consumer %u: block %p (%zu bytes) "
                        "from producer %u: trailer %#" PRIx64 " want %#"
                        PRIx64 " (header %#" PRIx64 ")\n", c->id, (void *)b,
                        sz, sl->producer, trailer, trailer_of(header), header);
                c->failed = 1;
                set_abort();
                return NULL;
            }
            c->checksum += header ^ (trailer >> 3);
            c->bytes += sz;
            free(b);
        }
        c->blocks += sl->count;
        return_empty(s);
    }
    return NULL;
}


static void usage(void)
{
    fprintf(stderr, "usage: prodcons [blocks [producers [consumers]]]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    long blocks = 10000000, np = 1, nc = 1;

    if (argc > 4)
        usage();
    if (argc > 1)
        blocks = parse_long(argv[1], 1, 1L << 40, usage);
    if (argc > 2)
        np = parse_long(argv[2], 1, MAX_THREADS, usage);
    if (argc > 3)
        nc = parse_long(argv[3], 1, MAX_THREADS, usage);

    static struct producer prod[MAX_THREADS];
    static struct consumer cons[MAX_THREADS];

    for (unsigned i = 0; i < NSLOTS; i++)
        empty_stack[i] = i;
    n_empty = NSLOTS;
    producers_left = (unsigned)np;

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    for (long i = 0; i < nc; i++) {
        cons[i].id = (unsigned)i;
        int e = pthread_create(&cons[i].thread, NULL, consumer_main, &cons[i]);
        if (e) {
            fprintf(stderr, "prodcons: pthread_create: %s\n", strerror(e));
            return 1;
        }
    }
    for (long i = 0; i < np; i++) {
        prod[i].id = (unsigned)i;
        prod[i].blocks = (uint64_t)(blocks / np + (i < blocks % np));
        int e = pthread_create(&prod[i].thread, NULL, producer_main, &prod[i]);
        if (e) {
            fprintf(stderr, "prodcons: pthread_create: %s\n", strerror(e));
            return 1;
        }
    }
    for (long i = 0; i < np; i++)
        pthread_join(prod[i].thread, NULL);
    for (long i = 0; i < nc; i++)
        pthread_join(cons[i].thread, NULL);

    clock_gettime(CLOCK_MONOTONIC, &t1);

    uint64_t freed = 0, bytes = 0, checksum = 0;
    int failed = 0;
    for (long i = 0; i < np; i++)
        failed |= prod[i].failed;
    for (long i = 0; i < nc; i++) {
        failed |= cons[i].failed;
        freed += cons[i].blocks;
        bytes += cons[i].bytes;
        checksum += cons[i].checksum;
    }
    if (failed)
        return 1;
    if (freed != (uint64_t)blocks) {
        fprintf(stderr, "prodcons: %" PRIu64 " blocks freed, %ld made\n",
                freed, blocks);
        return 1;
    }

    double ns = elapsed_ns(&t0, &t1);
    printf("prodcons producers=%ld consumers=%ld blocks=%" PRIu64
           " bytes=%" PRIu64 " checksum=%#018" PRIx64 "\n",
           np, nc, freed, bytes, mix64(checksum));
    fprintf(stderr, "prodcons: %.2f ns/block (wall) vmhwm_kib=%ld\n",
            ns / (double)blocks, peak_rss_kib());
    return 0;
}
