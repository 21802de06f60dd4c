/*
 * larson: the Larson server simulation.
 *
 * The idea is from Paul Larson and Murali Krishnan's "Memory allocation for
 * long-running server applications" (ISMM 1998), as used by the Hoard and
 * mimalloc-bench suites; the code is written from that description.  A
 * server's worker threads each own a set of live objects, replace them at
 * random, and are themselves replaced from time to time: a thread ends and
 * a new one takes over its objects, so most frees happen on a thread that
 * did not allocate the block, some of them after the allocating thread has
 * exited.
 *
 * T "lineages" each own an array of SLOTS (1000) blocks of random size
 * 16..1024 bytes.  The main thread allocates all of them first.  Then T
 * threads start, one per lineage; a round is SLOTS replacements, each of
 * which picks a random slot, checks and frees its block and mallocs a new
 * one of random size.  After `handoff` rounds the thread starts a
 * successor (a new, detached thread) that inherits the lineage (its slot
 * array and its random stream) and exits.  When a lineage has done its
 * `rounds` rounds its last thread reports to main, which, once every
 * lineage is done, checks and frees all the remaining blocks.
 *
 * Every block carries a header word at offset 0 and a trailer word in its
 * last eight bytes, functions of the block's tag and size, written by the
 * allocating thread and checked before every free (as in the original,
 * blocks are not otherwise touched, so the allocator's own work is most of
 * the cost).
 *
 * usage: larson [rounds [threads [handoff]]]
 *   rounds   rounds per lineage (default 2000); a round is 1000 mallocs
 *            and 1000 frees
 *   threads  number of lineages, i.e. threads running at once (default 2)
 *   handoff  rounds a thread runs before handing over to a successor
 *            (default 10)
 *
 * stdout: one line "larson threads=T rounds=R handoff=H threads_created=N
 * mallocs=... frees=... bytes=... checksum=0x..." that depends only on the
 * arguments.  stderr: ns per malloc/free pair (wall, all threads) and the
 * peak RSS ("vmhwm_kib=N").  A pattern mismatch, a failed malloc or a
 * failed pthread_create prints a diagnostic to stderr and exits with
 * status 1.
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

#define SLOTS 1000
#define MIN_SIZE 16
#define MAX_SIZE 1024
#define MAX_THREADS 256

struct lineage {
    unsigned id;
    uint64_t rng;
    uint64_t rounds_left;
    unsigned handoff;
    uint64_t generations; /* threads that have run this lineage */
    uint64_t mallocs, frees, bytes, checksum;
    unsigned char *ptr[SLOTS];
    uint32_t size[SLOTS];
    uint64_t tag[SLOTS];
};

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static unsigned lineages_done;
static pthread_attr_t detached;

/* Sizes are at least 16, so head and tail words never overlap. */
static void fill(unsigned char *p, size_t size, uint64_t tag)
{
    put_word(p, 0, word_pattern(tag, size, 0));
    put_word(p, size - 8, ~word_pattern(tag, size, size - 8));
}

static void check_and_free(struct lineage *l, unsigned i, const char *who)
{
    unsigned char *p = l->ptr[i];
    size_t size = l->size[i];
    uint64_t tag = l->tag[i], sum = 0;

    uint64_t head = get_word(p, 0);
    if (head != word_pattern(tag, size, 0)) {
        fprintf(stderr, "larson: %s: lineage %u slot %u block %p (%zu "
                "bytes): head word is %#" PRIx64 ", want %#" PRIx64 "\n",
                who, l->id, i, (void *)p, size, head, word_pattern(tag, size, 0));
        _exit(1);
    }
    sum += head;
    uint64_t got = get_word(p, size - 8);
    uint64_t want = ~word_pattern(tag, size, size - 8);
    if (got != want) {
        fprintf(stderr, "larson: %s: lineage %u slot %u block %p (%zu "
                "bytes): tail word is %#" PRIx64 ", want %#" PRIx64 "\n",
                who, l->id, i, (void *)p, size, got, want);
        _exit(1);
    }
    sum += got >> 1;
    l->checksum = mix64(l->checksum ^ sum);
    free(p);
    l->ptr[i] = NULL;
    l->frees++;
}

static void new_block(struct lineage *l, unsigned i)
{
    uint64_t r = xorshift64s(&l->rng);
    size_t size = MIN_SIZE + (size_t)((r >> 11) % (MAX_SIZE - MIN_SIZE + 1));
    unsigned char *p = malloc(size);
    if (p == NULL) {
        fprintf(stderr, "larson: lineage %u: malloc(%zu) failed: %s\n", l->id,
                size, strerror(errno));
        _exit(1);
    }
    l->ptr[i] = p;
    l->size[i] = (uint32_t)size;
    l->tag[i] = mix64(r);
    l->mallocs++;
    l->bytes += size;
    fill(p, size, l->tag[i]);
}

static void *worker_main(void *arg)
{
    struct lineage *l = arg;
    uint64_t n = l->rounds_left < l->handoff ? l->rounds_left : l->handoff;

    l->generations++;
    for (uint64_t r = 0; r < n; r++) {
        for (unsigned k = 0; k < SLOTS; k++) {
            unsigned i = (unsigned)((xorshift64s(&l->rng) >> 11) % SLOTS);
            check_and_free(l, i, "before free");
            new_block(l, i);
        }
    }
    l->rounds_left -= n;

    if (l->rounds_left > 0) {
        pthread_t next;
        int e = pthread_create(&next, &detached, worker_main, l);
        if (e != 0) {
            fprintf(stderr, "larson: lineage %u: pthread_create: %s\n", l->id,
                    strerror(e));
            _exit(1);
        }
        return NULL; /* the successor owns the lineage from here */
    }

    pthread_mutex_lock(&done_lock);
    lineages_done++;
    pthread_cond_signal(&done_cond);
    pthread_mutex_unlock(&done_lock);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: larson [rounds [threads [handoff]]]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    long rounds = 2000, threads = 2, handoff = 10;

    if (argc > 4)
        usage();
    if (argc > 1)
        rounds = parse_long(argv[1], 1, 1L << 32, usage);
    if (argc > 2)
        threads = parse_long(argv[2], 1, MAX_THREADS, usage);
    if (argc > 3)
        handoff = parse_long(argv[3], 1, 1L << 30, usage);

    if (pthread_attr_init(&detached) != 0 ||
        pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED) != 0) {
        fprintf(stderr, "larson: pthread_attr setup failed\n");
        return 1;
    }

    /* The lineages themselves are the program's bookkeeping, not part of
     * the measured workload, but they come from malloc all the same. */
    struct lineage *lin = calloc((size_t)threads, sizeof *lin);
    if (lin == NULL) {
        fprintf(stderr, "larson: out of memory\n");
        return 1;
    }

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    for (long t = 0; t < threads; t++) {
        struct lineage *l = &lin[t];
        l->id = (unsigned)t;
        l->rng = mix64(0x1a750bULL + (uint64_t)t) | 1;
        l->rounds_left = (uint64_t)rounds;
        l->handoff = (unsigned)handoff;
        for (unsigned i = 0; i < SLOTS; i++)
            new_block(l, i);
    }

    for (long t = 0; t < threads; t++) {
        pthread_t th;
        int e = pthread_create(&th, &detached, worker_main, &lin[t]);
        if (e != 0) {
            fprintf(stderr, "larson: pthread_create: %s\n", strerror(e));
            return 1;
        }
    }

    pthread_mutex_lock(&done_lock);
    while (lineages_done < (unsigned)threads)
        pthread_cond_wait(&done_cond, &done_lock);
    pthread_mutex_unlock(&done_lock);

    for (long t = 0; t < threads; t++)
        for (unsigned i = 0; i < SLOTS; i++)
            check_and_free(&lin[t], i, "at the end");

    clock_gettime(CLOCK_MONOTONIC, &t1);

    uint64_t mallocs = 0, frees = 0, bytes = 0, checksum = 0, created = 0;
    for (long t = 0; t < threads; t++) {
        mallocs += lin[t].mallocs;
        frees += lin[t].frees;
        bytes += lin[t].bytes;
        created += lin[t].generations;
        checksum = mix64(checksum ^ lin[t].checksum);
    }
    free(lin);
    pthread_attr_destroy(&detached);

    if (mallocs != frees) {
        fprintf(stderr, "larson: %" PRIu64 " mallocs but %" PRIu64 " frees\n",
                mallocs, frees);
        return 1;
    }

    double ns = elapsed_ns(&t0, &t1);
    printf("larson threads=%ld rounds=%ld handoff=%ld threads_created=%"
           PRIu64 " mallocs=%" PRIu64 " frees=%" PRIu64 " bytes=%" PRIu64
           " checksum=%#018" PRIx64 "\n", threads, rounds, handoff, created,
           mallocs, frees, bytes, checksum);
    fprintf(stderr, "larson: %.2f ns per malloc/free pair (wall) "
            "vmhwm_kib=%ld\n", ns / (double)mallocs, peak_rss_kib());
    return 0;
}
