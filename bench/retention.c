/*
 * retention: how much memory an allocator keeps after a program frees most
 * of what it allocated, while the program carries on with a light load.
 *
 * The figure to read is rss_end_kib (printed on stderr): the resident set
 * at the end, from /proc/self/statm, to be compared with live_kib, the bytes
 * the program still holds.  Peak RSS (vmhwm_kib) is about the same for every
 * allocator here and says little.
 *
 * Phases:
 *   1. build: allocate about MIB MiB in a shuffled mix of small blocks
 *      (16..512 B, 35% of the bytes), medium blocks (1..64 KiB, 40%) and
 *      large blocks (256 KiB..4 MiB, 25%); every byte is written, so it is
 *      all resident.
 *   2. drop: free 92% of the blocks, chosen at random and in random order
 *      (each checked before its free).  The 8% that survive are scattered
 *      over the whole heap, as the long-lived objects of a program that
 *      has finished a big phase (a parse, a load, a batch) would be.
 *   3. steady: ROUNDS rounds of light work, each replacing 200 random blocks
 *      of a pool of 2000 (16 B..4 KiB) and then sleeping 1 ms, so the phase
 *      lasts at least ROUNDS ms of wall time whatever the allocator: time
 *      for allocators that give memory back on a timer or after a number
 *      of operations to do so.
 *   4. measure and check: all surviving blocks are checked, the resident
 *      set is read (rss_end_kib), then everything is freed.
 *
 * Ideas: the memory-retention concerns of long-running servers (glibc's
 * malloc_trim discussions, jemalloc's decay and mimalloc's purge delays,
 * mimalloc-bench's "rss after work" columns); code written from scratch.
 *
 * usage: retention [mib [rounds]]
 *   mib     MiB allocated in phase 1 (default 300)
 *   rounds  rounds of the steady phase, each ~1 ms or more (default 500)
 *
 * stdout: one line "retention mib=M blocks=N freed=F steady_ops=S
 * live_kib=L checksum=0x..."; all figures depend only on the arguments
 * (live_kib counts the bytes of the surviving blocks, of the pool and of
 * the program's own two bookkeeping arrays).
 * stderr: "rss_end_kib=N", "live_kib=N" and "vmhwm_kib=N".  A wrong byte or
 * a failed malloc prints a diagnostic to stderr and exits with status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_support.h"

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)

#define DROP_PERCENT 92
#define POOL 2000
#define OPS_PER_ROUND 200

struct block {
    unsigned char *p;
    size_t size;
};

static uint64_t rng_state = 0x726574656e74696fULL;
static uint64_t checksum;

static inline uint64_t next_rand(void)
{
    return splitmix_next(&rng_state);
}

static inline uint64_t tag_of(uint64_t id, size_t size)
{
    return mix64(id * 0x100000001b3ULL + size);
}

/* Fill a block: an 8-byte tag at the front (when it fits), a fill byte
 * everywhere else, so every page of the block is written. */
static void fill(struct block *b, uint64_t id)
{
    uint64_t tag = tag_of(id, b->size);
    unsigned char fillc = (unsigned char)(tag >> 56);
    if (b->size >= 8) {
        memcpy(b->p, &tag, 8);
        memset(b->p + 8, fillc, b->size - 8);
    } else {
        memset(b->p, fillc, b->size);
    }
}

static void alloc_block(struct block *b, size_t size, uint64_t id)
{
    b->size = size;
    b->p = malloc(size);
    if (b->p == NULL) {
        fprintf(stderr, "retention: malloc(%zu) failed: %s\n", size,
                strerror(errno));
        exit(1);
    }
    fill(b, id);
}

/* Check the tag, the last byte and a byte in the middle. */
static void check(const struct block *b, uint64_t id, const char *when)
{
    uint64_t tag = tag_of(id, b->size), got = tag;
    unsigned char fillc = (unsigned char)(tag >> 56);
    int ok = 1;
    if (b->size >= 8)
        memcpy(&got, b->p, 8);
    if (got != tag)
        ok = 0;
    if (b->size > 8 && (b->p[b->size - 1] != fillc ||
                        b->p[8 + (b->size - 8) / 2] != fillc))
        ok = 0;
    if (!ok) {
        fprintf(stderr, "retention: block %" PRIu64 " (%p, %zu bytes) "
                "corrupted (%s)\n", id, (void *)b->p, b->size, when);
        exit(1);
    }
    checksum = mix64(checksum ^ tag ^ b->size);
}

static long rss_now_kib(void)
{
    long size = 0, resident = -1;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    if (resident < 0)
        return -1;
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void usage(void)
{
    fprintf(stderr, "usage: retention [mib [rounds]]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    long mib = 300, rounds = 500;

    if (argc > 3)
        usage();
    if (argc > 1) {
        mib = parse_long(argv[1], 1, 65536, usage);
    }
    if (argc > 2) {
        rounds = parse_long(argv[2], 0, 1000000, usage);
    }

    /* Phase 1: block counts per category from the byte shares and the mean
     * sizes, in a shuffled order. */
    size_t total = (size_t)mib * MIB;
    size_t n_small = total * 35 / 100 / 264;
    size_t n_medium = total * 40 / 100 / ((1 * KIB + 64 * KIB) / 2);
    size_t n_large = total * 25 / 100 / ((256 * KIB + 4 * MIB) / 2);
    if (n_large == 0)
        n_large = 1;
    size_t n = n_small + n_medium + n_large;

    struct block *blocks = calloc(n, sizeof *blocks);
    unsigned char *kind = malloc(n);
    size_t *order = malloc(n * sizeof *order);
    if (blocks == NULL || kind == NULL || order == NULL) {
        fprintf(stderr, "retention: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        kind[i] = i < n_small ? 0 : i < n_small + n_medium ? 1 : 2;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(next_rand() % (i + 1));
        unsigned char t = kind[i];
        kind[i] = kind[j];
        kind[j] = t;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t r = next_rand();
        size_t size;
        switch (kind[i]) {
        case 0:
            size = 16 + (size_t)(r % (512 - 16 + 1));
            break;
        case 1:
            size = KIB + (size_t)(r % (64 * KIB - KIB + 1));
            break;
        default:
            size = 256 * KIB + (size_t)(r % (4 * MIB - 256 * KIB + 1));
            break;
        }
        alloc_block(&blocks[i], size, i);
    }
    free(kind);

    /* Phase 2: free DROP_PERCENT% in random order. */
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(next_rand() % (i + 1));
        size_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    size_t n_free = n * DROP_PERCENT / 100;
    for (size_t k = 0; k < n_free; k++) {
        struct block *b = &blocks[order[k]];
        check(b, order[k], "before free");
        free(b->p);
        b->p = NULL;
    }

    /* Phase 3: steady light load on a pool of small blocks, paced. */
    struct block pool[POOL];
    uint64_t pool_id[POOL];
    uint64_t next_id = n, steady_ops = 0;
    for (unsigned i = 0; i < POOL; i++) {
        pool_id[i] = next_id++;
        alloc_block(&pool[i], 16 + (size_t)(next_rand() % (4096 - 16 + 1)),
                    pool_id[i]);
    }
    struct timespec pause = { 0, 1000000 };
    for (long r = 0; r < rounds; r++) {
        for (unsigned k = 0; k < OPS_PER_ROUND; k++) {
            uint64_t x = next_rand();
            unsigned i = (unsigned)(x % POOL);
            check(&pool[i], pool_id[i], "steady");
            free(pool[i].p);
            pool_id[i] = next_id++;
            alloc_block(&pool[i], 16 + (size_t)((x >> 32) % (4096 - 16 + 1)),
                        pool_id[i]);
            steady_ops++;
        }
        nanosleep(&pause, NULL);
    }

    /* Phase 4: check what is live, measure, free. */
    size_t live = n * (sizeof *blocks + sizeof *order); /* own arrays */
    for (size_t k = n_free; k < n; k++) {
        check(&blocks[order[k]], order[k], "at end");
        live += blocks[order[k]].size;
    }
    for (unsigned i = 0; i < POOL; i++) {
        check(&pool[i], pool_id[i], "at end");
        live += pool[i].size;
    }
    long rss_end = rss_now_kib();

    for (size_t k = n_free; k < n; k++)
        free(blocks[order[k]].p);
    for (unsigned i = 0; i < POOL; i++)
        free(pool[i].p);
    free(blocks);
    free(order);

    printf("retention mib=%ld blocks=%zu freed=%zu steady_ops=%" PRIu64
           " live_kib=%zu checksum=%#018" PRIx64 "\n",
           mib, n, n_free, steady_ops, live / KIB, checksum);
    fprintf(stderr, "retention: rss_end_kib=%ld live_kib=%zu vmhwm_kib=%ld\n",
            rss_end, live / KIB, peak_rss_kib());
    return 0;
}
