/*
 * churn: single-threaded small-object churn with mixed lifetimes.
 *
 * Two workload shapes, chosen by the first argument.  Both are modelled on
 * the two classic single-threaded allocation-heavy programs of the
 * malloc-benchmark literature (they appear in the Zorn/Grunwald traces, in
 * the Hoard and mimalloc-bench suites); only the allocation pattern is
 * imitated here, not what the programs compute, and no code is taken from
 * them.
 *
 * cfrac     Continued-fraction factoring does arithmetic on small
 *           heap-allocated bignums: nearly every operation makes a few
 *           temporaries of 8..64 bytes that die almost at once, mostly in
 *           LIFO order, while a few results live on.  Each step here picks
 *           two operands from a table of long-lived "numbers" (600 slots),
 *           builds a chain of 2..5 temporaries whose contents derive from
 *           the operands and from each other (every temporary is read back
 *           before the next is made), and frees the chain, LIFO three times
 *           in four, FIFO otherwise.  One step in eight the chain's result
 *           replaces a random long-lived number (the old one is freed); one
 *           in four its first temporary enters a 64-entry ring of
 *           mid-lived values, evicting the oldest.  Sizes are even numbers
 *           from 8 to 64 bytes (16, 24, 32 favoured) with 5% of 65..256.
 *
 * espresso  The logic minimiser works on sets of cubes: objects of mixed
 *           size (8 bytes to 2 KiB), a working set of a few thousand live
 *           objects that grows and shrinks from phase to phase, frees in no
 *           particular order, temporaries made from pairs of live sets, and
 *           frequent realloc of growing sets.  Here a dense table holds the
 *           live objects; every 20000 steps a new target population
 *           (500..4500) is drawn, and each step allocates or frees a random
 *           live object (biased three to one towards the target), half the
 *           steps make and free a temporary sized after two live objects,
 *           and one step in sixteen reallocs a random live object to a new
 *           size.  Sizes: 55% 8..64, 25% 65..256, 15% 257..1024, 5%
 *           1025..2048 bytes.
 *
 * Every block carries a pattern: an 8-byte word at offset 0 and every 64
 * bytes after it, and one in the last eight bytes, each a function of the
 * block's tag, size and offset (a block of 9..15 bytes: one word, then
 * pattern bytes).  The whole pattern is checked before every
 * free (and the preserved part after every realloc); operands have their
 * first word checked when read.
 *
 * usage: churn [cfrac|espresso [scale]]
 *   scale  multiplies the default number of steps (fractions allowed;
 *          1 takes roughly one second under glibc)
 *
 * stdout: one line "churn mode=M steps=... mallocs=... reallocs=...
 * frees=... bytes=... checksum=0x..." that depends only on the arguments.
 * stderr: ns per malloc+realloc+free call and the peak RSS ("vmhwm_kib=N").
 * A pattern mismatch or a failed (re)allocation prints a diagnostic to
 * stderr and exits with status 1.
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


/* Steps at scale 1 (about one second each under glibc). */
#define CFRAC_STEPS 5000000.0
#define ESPRESSO_STEPS 4000000.0

struct obj {
    unsigned char *p;
    size_t size;
    uint64_t tag;
};

static uint64_t n_malloc, n_realloc, n_free, n_bytes, checksum;

/* xorshift64*: the workload's random stream. */
static uint64_t rng_state = 0x243f6a8885a308d3ULL;

static inline uint64_t rnd(void)
{
    return xorshift64s(&rng_state);
}

/* Uniform in 0..n-1 (n small; the modulo bias is irrelevant here). */
static inline uint64_t below(uint64_t n)
{
    return (rnd() >> 11) % n;
}

static void fail(const char *what, const struct obj *o, size_t off,
                 uint64_t got, uint64_t want)
{
    fprintf(stderr, "churn: %s: block %p (%zu bytes, tag %#" PRIx64 ") "
            "word at offset %zu is %#" PRIx64 ", want %#" PRIx64 "\n",
            what, (void *)o->p, o->size, o->tag, off, got, want);
    _exit(1);
}

static void fill(const struct obj *o)
{
    size_t off;
    for (off = 0; off + 16 <= o->size; off += 64)
        put_word(o->p, off, word_pattern(o->tag, o->size, off));
    put_word(o->p, tail_off(o->size),
             ~word_pattern(o->tag, o->size, tail_off(o->size)));
    for (size_t i = 8; i < o->size && o->size < 16; i++)
        o->p[i] = odd_byte(o->tag, i);
}

/*
 * Check the pattern words of `o` that lie entirely below `limit` (the full
 * size for a block about to be freed, the preserved prefix after realloc).
 */
static void check(const struct obj *o, size_t limit, const char *what)
{
    size_t off, t = tail_off(o->size);
    uint64_t sum = 0;
    for (off = 0; off + 16 <= o->size && off + 8 <= limit; off += 64) {
        uint64_t got = get_word(o->p, off);
        uint64_t want = word_pattern(o->tag, o->size, off);
        if (got != want)
            fail(what, o, off, got, want);
        sum += got;
    }
    if (t + 8 <= limit) {
        uint64_t got = get_word(o->p, t);
        uint64_t want = ~word_pattern(o->tag, o->size, t);
        if (got != want)
            fail(what, o, t, got, want);
        sum += got >> 1;
    }
    for (size_t i = 8; i < o->size && o->size < 16 && i < limit; i++) {
        if (o->p[i] != odd_byte(o->tag, i)) {
            fprintf(stderr, "churn: %s: block %p (%zu bytes, tag %#" PRIx64
                    ") byte %zu is %#x, want %#x\n", what, (void *)o->p,
                    o->size, o->tag, i, o->p[i], odd_byte(o->tag, i));
            _exit(1);
        }
    }
    checksum = mix64(checksum ^ sum);
}

/* The first word of a live object, checked: an operand being read. */
static uint64_t read_head(const struct obj *o)
{
    uint64_t got = get_word(o->p, 0);
    uint64_t want = o->size >= 16 ? word_pattern(o->tag, o->size, 0)
                                  : ~word_pattern(o->tag, o->size, 0);
    if (got != want)
        fail("operand", o, 0, got, want);
    return got;
}

static void obj_new(struct obj *o, size_t size, uint64_t tag)
{
    o->p = malloc(size);
    if (o->p == NULL) {
        fprintf(stderr, "churn: malloc(%zu) failed: %s\n", size,
                strerror(errno));
        _exit(1);
    }
    o->size = size;
    o->tag = tag;
    n_malloc++;
    n_bytes += size;
    fill(o);
}

static void obj_free(struct obj *o)
{
    check(o, o->size, "before free");
    free(o->p);
    o->p = NULL;
    n_free++;
}

static void obj_resize(struct obj *o, size_t size, uint64_t tag)
{
    unsigned char *q = realloc(o->p, size);
    if (q == NULL) {
        fprintf(stderr, "churn: realloc(%p, %zu) failed: %s\n", (void *)o->p,
                size, strerror(errno));
        _exit(1);
    }
    o->p = q;
    check(o, size < o->size ? size : o->size, "after realloc");
    o->size = size;
    o->tag = tag;
    n_realloc++;
    n_bytes += size;
    fill(o);
}

/* ---- cfrac ------------------------------------------------------------ */

#define CF_LONG 600
#define CF_RING 64
#define CF_MAXCHAIN 5

static size_t cfrac_size(void)
{
    uint64_t r = below(100);
    if (r < 15)
        return 16;
    if (r < 30)
        return 24;
    if (r < 40)
        return 32;
    if (r < 95)
        return 8 + 2 * below(29); /* 8..64, even */
    return 65 + below(192);       /* 65..256 */
}

static uint64_t run_cfrac(uint64_t steps)
{
    static struct obj longl[CF_LONG], ring[CF_RING], chain[CF_MAXCHAIN];
    unsigned ring_pos = 0;

    for (unsigned i = 0; i < CF_LONG; i++)
        obj_new(&longl[i], cfrac_size(), rnd());

    for (uint64_t s = 0; s < steps; s++) {
        struct obj *a = &longl[below(CF_LONG)];
        struct obj *b = &longl[below(CF_LONG)];
        uint64_t v = read_head(a) + 3 * read_head(b);
        unsigned d = 2 + (unsigned)below(CF_MAXCHAIN - 1);

        for (unsigned j = 0; j < d; j++) {
            obj_new(&chain[j], cfrac_size(), mix64(v + j));
            v = read_head(&chain[j]) ^ (s << 8);
        }

        unsigned keep_result = below(8) == 0;
        unsigned keep_first = below(4) == 0;
        if (keep_result) {
            struct obj *victim = &longl[below(CF_LONG)];
            obj_free(victim);
            *victim = chain[d - 1];
            chain[d - 1].p = NULL;
        }
        if (keep_first) {
            struct obj *slot = &ring[ring_pos];
            ring_pos = (ring_pos + 1) % CF_RING;
            if (slot->p != NULL)
                obj_free(slot);
            *slot = chain[0];
            chain[0].p = NULL;
        }
        if (below(4) != 0) {
            for (unsigned j = d; j-- > 0;)
                if (chain[j].p != NULL)
                    obj_free(&chain[j]);
        } else {
            for (unsigned j = 0; j < d; j++)
                if (chain[j].p != NULL)
                    obj_free(&chain[j]);
        }
    }

    for (unsigned i = 0; i < CF_RING; i++)
        if (ring[i].p != NULL)
            obj_free(&ring[i]);
    for (unsigned i = 0; i < CF_LONG; i++)
        obj_free(&longl[i]);
    return steps;
}

/* ---- espresso --------------------------------------------------------- */

#define ES_CAP 8192
#define ES_PHASE 20000

static size_t espresso_size(void)
{
    uint64_t r = below(100);
    if (r < 55)
        return 8 + below(57);   /* 8..64 */
    if (r < 80)
        return 65 + below(192); /* 65..256 */
    if (r < 95)
        return 257 + below(768); /* 257..1024 */
    return 1025 + below(1024);   /* 1025..2048 */
}

static uint64_t run_espresso(uint64_t steps)
{
    static struct obj live[ES_CAP];
    size_t n = 0, target = 0;

    for (uint64_t s = 0; s < steps; s++) {
        if (s % ES_PHASE == 0)
            target = 500 + below(4001);

        int grow;
        if (n == 0)
            grow = 1;
        else if (n == ES_CAP)
            grow = 0;
        else if (n < target)
            grow = below(4) != 0;
        else
            grow = below(4) == 0;

        if (grow) {
            obj_new(&live[n], espresso_size(), rnd());
            n++;
        } else {
            size_t j = below(n);
            obj_free(&live[j]);
            live[j] = live[--n];
        }

        if (n >= 2 && below(2) == 0) {
            /* A temporary made from two live sets, gone at once. */
            struct obj *x = &live[below(n)], *y = &live[below(n)];
            size_t sz = x->size > y->size ? x->size : y->size;
            struct obj t;
            obj_new(&t, sz, read_head(x) ^ (read_head(y) << 1));
            obj_free(&t);
        }

        if (n >= 1 && below(16) == 0) {
            struct obj *o = &live[below(n)];
            obj_resize(o, espresso_size(), rnd());
        }
    }

    while (n > 0)
        obj_free(&live[--n]);
    return steps;
}

/* ---- main ------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: churn [cfrac|espresso [scale]]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *mode = "cfrac";
    double scale = 1.0;

    if (argc > 3)
        usage();
    if (argc > 1)
        mode = argv[1];
    if (strcmp(mode, "cfrac") != 0 && strcmp(mode, "espresso") != 0)
        usage();
    if (argc > 2) {
        scale = parse_scale(argv[2], usage);
    }

    int cfrac = strcmp(mode, "cfrac") == 0;
    double base = cfrac ? CFRAC_STEPS : ESPRESSO_STEPS;
    uint64_t steps = (uint64_t)(base * scale + 0.5);
    if (steps == 0)
        steps = 1;
    rng_state = mix64(cfrac ? 0xcf7acULL : 0xe5b7e550ULL) | 1;

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (cfrac)
        run_cfrac(steps);
    else
        run_espresso(steps);
    clock_gettime(CLOCK_MONOTONIC, &t1);

    if (n_free != n_malloc) {
        fprintf(stderr, "churn: %" PRIu64 " mallocs but %" PRIu64 " frees\n",
                n_malloc, n_free);
        return 1;
    }

    double ns = elapsed_ns(&t0, &t1);
    uint64_t calls = n_malloc + n_realloc + n_free;
    printf("churn mode=%s steps=%" PRIu64 " mallocs=%" PRIu64
           " reallocs=%" PRIu64 " frees=%" PRIu64 " bytes=%" PRIu64
           " checksum=%#018" PRIx64 "\n", mode, steps, n_malloc, n_realloc,
           n_free, n_bytes, checksum);
    fprintf(stderr, "churn: %.2f ns/call (malloc, realloc, free) "
            "vmhwm_kib=%ld\n", ns / (double)calls, peak_rss_kib());
    return 0;
}
