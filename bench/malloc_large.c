/*
 * malloc_large: a small window of live large blocks (2..20 MiB), one slot
 * replaced per iteration.
 *
 * Shape taken from mimalloc-bench's "malloc-large" test (a few buffers of
 * several MiB each, allocated and freed over and over), with the difference
 * that every new block is really used: one byte is written in each 4 KiB
 * page, as a program that fills its buffers would.  That is what separates
 * the allocators here.  glibc raises its mmap threshold after the first
 * large free and from then on serves these sizes from its heap, whose pages
 * stay resident, so touching a recycled block costs no page fault.  An
 * allocator that unmaps (or purges) a freed large block and maps a fresh one
 * for the next request pays a page fault plus a page clear for every page it
 * hands out again, which is several times slower.
 *
 * Each iteration picks a random slot; if it holds a block, a few bytes of
 * it (first, last, and some pages chosen by the block's tag) are checked
 * and it is freed; then a block of random size in [2 MiB, 20 MiB] (not page
 * aligned) is allocated into the slot and every 4 KiB page of it gets one
 * byte written, plus the last byte.  At the end all remaining blocks are
 * checked and freed.
 *
 * usage: malloc_large [iterations [slots]]
 *   iterations  block replacements (default 3000)
 *   slots       live window size (default 20, at most 1024)
 *
 * stdout: one line "malloc_large iters=N slots=S mallocs=M mib=B
 * checksum=0x..."; every figure depends only on the arguments.  A wrong byte
 * or a failed malloc prints a diagnostic to stderr and exits with status 1.
 * The program's own ns per iteration and its peak RSS ("vmhwm_kib=N") go to
 * stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_support.h"

#define MIB ((size_t)1 << 20)
#define MIN_SIZE (2 * MIB)
#define MAX_SIZE (20 * MIB)
#define TOUCH_STRIDE 4096
#define SAMPLES 6 /* pages checked per block besides first and last byte */

struct slot {
    unsigned char *p;
    size_t size;
    uint64_t tag;
};

static uint64_t rng_state = 0x6d616c6c6f632d6cULL;

static inline uint64_t next_rand(void)
{
    return splitmix_next(&rng_state);
}

/* The byte stored at offset off of a block with the given tag. */
static inline unsigned char pattern(uint64_t tag, size_t off)
{
    uint64_t v = tag + (uint64_t)off * 0x9e3779b1ULL;
    return (unsigned char)(v ^ (v >> 29) ^ (v >> 47));
}

static void touch(struct slot *s)
{
    unsigned char *p = s->p;
    size_t off;
    for (off = 0; off < s->size; off += TOUCH_STRIDE)
        p[off] = pattern(s->tag, off);
    p[s->size - 1] = pattern(s->tag, s->size - 1);
}

/* Check the first and last byte and SAMPLES page-start bytes; returns the
 * sum of the bytes checked, or -1 after a diagnostic. */
static int64_t check(const struct slot *s, unsigned idx)
{
    size_t pages = (s->size + TOUCH_STRIDE - 1) / TOUCH_STRIDE;
    size_t offs[SAMPLES + 2];
    int64_t sum = 0;
    uint64_t h = s->tag;

    offs[0] = 0;
    offs[1] = s->size - 1;
    for (unsigned i = 0; i < SAMPLES; i++) {
        h = mix64(h);
        offs[i + 2] = (size_t)(h % pages) * TOUCH_STRIDE;
    }
    for (unsigned i = 0; i < SAMPLES + 2; i++) {
        unsigned char want = pattern(s->tag, offs[i]);
        unsigned char got = s->p[offs[i]];
        if (got != want) {
            fprintf(stderr,
                    "malloc_large: slot %u block %p (%zu bytes): byte at "
                    "offset %zu is %#x, want %#x\n",
                    idx, (void *)s->p, s->size, offs[i], got, want);
            return -1;
        }
        sum += got;
    }
    return sum;
}

static void usage(void)
{
    fprintf(stderr, "usage: malloc_large [iterations [slots]]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    long iters = 3000, nslots = 20;

    if (argc > 3)
        usage();
    if (argc > 1) {
        iters = parse_long(argv[1], 1, 100000000L, usage);
    }
    if (argc > 2) {
        nslots = parse_long(argv[2], 1, 1024, usage);
    }

    struct slot *slots = calloc((size_t)nslots, sizeof *slots);
    if (slots == NULL) {
        fprintf(stderr, "malloc_large: out of memory\n");
        return 1;
    }

    uint64_t mallocs = 0, bytes = 0, checksum = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    for (long it = 0; it < iters; it++) {
        uint64_t r = next_rand();
        unsigned idx = (unsigned)(r % (uint64_t)nslots);
        struct slot *s = &slots[idx];

        if (s->p != NULL) {
            int64_t sum = check(s, idx);
            if (sum < 0)
                return 1;
            checksum = mix64(checksum ^ (uint64_t)sum);
            free(s->p);
        }

        s->size = MIN_SIZE + (size_t)(next_rand() % (MAX_SIZE - MIN_SIZE + 1));
        s->tag = next_rand();
        s->p = malloc(s->size);
        if (s->p == NULL) {
            fprintf(stderr, "malloc_large: malloc(%zu) failed: %s\n",
                    s->size, strerror(errno));
            return 1;
        }
        touch(s);
        mallocs++;
        bytes += s->size;
    }

    for (long i = 0; i < nslots; i++) {
        struct slot *s = &slots[i];
        if (s->p == NULL)
            continue;
        int64_t sum = check(s, (unsigned)i);
        if (sum < 0)
            return 1;
        checksum = mix64(checksum ^ (uint64_t)sum);
        free(s->p);
    }

    clock_gettime(CLOCK_MONOTONIC, &t1);
    free(slots);

    double ns = elapsed_ns(&t0, &t1);
    printf("malloc_large iters=%ld slots=%ld mallocs=%" PRIu64
           " mib=%" PRIu64 " checksum=%#018" PRIx64 "\n",
           iters, nslots, mallocs, bytes >> 20, checksum);
    fprintf(stderr, "malloc_large: %.0f ns/iteration vmhwm_kib=%ld\n",
            ns / (double)iters, peak_rss_kib());
    return 0;
}
