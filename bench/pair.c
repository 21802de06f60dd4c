/*
 * pair: the instruction cost of one malloc+free pair on an allocator's fast
 * path, for bench/icount to count under valgrind's callgrind.
 *
 * Not a timed benchmark (it has no row in bench/suite/): instruction counts
 * are repeatable on a noisy machine where wall times are not.  The idea is
 * the same as glibc's benchtests bench-malloc-simple, reduced to the part a
 * counter can isolate.
 *
 * Shape: before the measured loop, one "keeper" block of every size is
 * allocated and held to the end, so the slab (or bin, span, page) serving a
 * size never goes empty and nobody returns it to the OS mid-loop.  The loop
 * then runs rounds of BATCH mallocs (sizes taken in turn from the size list,
 * e.g. 32, 48, 64, 32, ...), writes one byte into each block, and frees the
 * batch in allocation order.  Every malloc and free is a call through a
 * volatile function pointer, set before the loop either to malloc/free or,
 * with --baseline, to two empty stubs.  The loop's code is therefore the
 * same in both modes and only the callee changes:
 *
 *   real     = loop + (malloc + free) per pair
 *   baseline = loop + (stub_malloc + stub_free) per pair
 *
 * bench/icount counts only inside measured_loop (--toggle-collect), takes
 * the difference of two pair counts so that the first-touch work (creating
 * slabs, thread caches) cancels, subtracts the baseline's difference, and
 * adds back the stubs' own instructions, counted alone with
 * --toggle-collect=stub_malloc --toggle-collect=stub_free.
 *
 * usage: pair [--baseline] [pairs [size...]]
 *   pairs  malloc+free pairs in the measured loop, a multiple of 64
 *          (default 1048576)
 *   size   block sizes in bytes, used in turn (default 32 48 64)
 *
 * stdout: one line "pair mode=malloc|baseline pairs=N sizes=A,B,C
 * checksum=0x..."; the checksum covers the bytes written and read back, so it
 * does not depend on the allocator.  stderr: ns per pair (native runs only
 * mean something) and "vmhwm_kib=N".  A failed malloc or a byte read back
 * wrong prints a diagnostic and exits with status 1.
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

#define BATCH 64
#define MAX_SIZES 16
#define MAX_SIZE (1u << 20)
#define DEFAULT_PAIRS 1048576ul

/* The callees of the measured loop; volatile so that the loop always loads
 * and calls through them, whichever functions they hold. */
void *(*volatile alloc_fn)(size_t);
void (*volatile free_fn)(void *);

/* Non-static so that callgrind finds them by these names. */
void *stub_malloc(size_t size) __attribute__((noinline, noclone));
void stub_free(void *p) __attribute__((noinline, noclone));
uint64_t measured_loop(size_t rounds, const size_t *size_of_slot,
                       unsigned char **slots)
    __attribute__((noinline, noclone));

/* The stubs hand out BATCH distinct static cells in turn: the loop writes
 * and reads back only the first byte of a block.  Whatever the stubs cost,
 * bench/icount counts it alone and adds it back. */
static unsigned char stub_cells[BATCH][64];
static unsigned stub_next;

void *stub_malloc(size_t size)
{
    (void)size;
    return stub_cells[stub_next++ % BATCH];
}

void stub_free(void *p)
{
    (void)p;
}

/*
 * rounds times: BATCH mallocs, one byte written into each block, then BATCH
 * frees, each byte read back first.  Returns a checksum of the bytes read,
 * or UINT64_MAX after printing a diagnostic.
 */
uint64_t measured_loop(size_t rounds, const size_t *size_of_slot,
                       unsigned char **slots)
{
    uint64_t sum = 0;

    for (size_t r = 0; r < rounds; r++) {
        for (unsigned i = 0; i < BATCH; i++) {
            unsigned char *p = alloc_fn(size_of_slot[i]);
            if (p == NULL) {
                fprintf(stderr, "pair: malloc(%zu) failed: %s\n",
                        size_of_slot[i], strerror(errno));
                return UINT64_MAX;
            }
            p[0] = (unsigned char)(r + i);
            slots[i] = p;
        }
        for (unsigned i = 0; i < BATCH; i++) {
            unsigned char *p = slots[i];
            if (p[0] != (unsigned char)(r + i)) {
                fprintf(stderr, "pair: round %zu block %u: byte %u, want %u\n",
                        r, i, p[0], (unsigned char)(r + i));
                return UINT64_MAX;
            }
            sum += (unsigned char)(r + i);
            free_fn(p);
        }
    }
    return sum;
}

static void usage(void)
{
    fprintf(stderr, "usage: pair [--baseline] [pairs [size...]]\n"
                    "  pairs: a positive multiple of %d (default %lu)\n"
                    "  size:  1..%u bytes (default 32 48 64)\n",
            BATCH, DEFAULT_PAIRS, MAX_SIZE);
    exit(2);
}

int main(int argc, char **argv)
{
    int baseline = 0;
    unsigned long pairs = DEFAULT_PAIRS;
    size_t sizes[MAX_SIZES] = { 32, 48, 64 };
    unsigned nsizes = 3;
    size_t size_of_slot[BATCH];
    unsigned char *slots[BATCH];
    unsigned char *keepers[MAX_SIZES];
    char size_list[MAX_SIZES * 8 + 1];
    size_t used = 0;
    struct timespec t0, t1;
    int arg = 1;

    if (arg < argc && strcmp(argv[arg], "--baseline") == 0) {
        baseline = 1;
        arg++;
    }
    if (arg < argc)
        pairs = (unsigned long)parse_long(argv[arg++], 1, 1L << 40, usage);
    if (pairs % BATCH != 0)
        usage();
    if (arg < argc) {
        nsizes = 0;
        while (arg < argc) {
            if (nsizes == MAX_SIZES)
                usage();
            sizes[nsizes++] = (size_t)parse_long(argv[arg++], 1, MAX_SIZE, usage);
        }
    }

    size_list[0] = '\0';
    for (unsigned i = 0; i < nsizes; i++)
        used += (size_t)snprintf(size_list + used, sizeof size_list - used,
                                 "%s%zu", i ? "," : "", sizes[i]);
    /* A per-slot table keeps the loop's instructions independent of how
     * many sizes there are. */
    for (unsigned i = 0; i < BATCH; i++)
        size_of_slot[i] = sizes[i % nsizes];

    if (baseline) {
        alloc_fn = stub_malloc;
        free_fn = stub_free;
    } else {
        alloc_fn = malloc;
        free_fn = free;
    }

    for (unsigned i = 0; i < nsizes; i++) {
        keepers[i] = alloc_fn(sizes[i]);
        if (keepers[i] == NULL) {
            fprintf(stderr, "pair: malloc(%zu) failed: %s\n", sizes[i],
                    strerror(errno));
            return 1;
        }
    }

    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t sum = measured_loop(pairs / BATCH, size_of_slot, slots);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (sum == UINT64_MAX)
        return 1;

    for (unsigned i = 0; i < nsizes; i++)
        free_fn(keepers[i]);

    printf("pair mode=%s pairs=%lu sizes=%s checksum=%#" PRIx64 "\n",
           baseline ? "baseline" : "malloc", pairs, size_list, sum);
    double ns = elapsed_ns(&t0, &t1);
    fprintf(stderr, "pair: %.2f ns per malloc+free pair\n", ns / (double)pairs);
    fprintf(stderr, "vmhwm_kib=%ld\n", peak_rss_kib());
    return 0;
}
