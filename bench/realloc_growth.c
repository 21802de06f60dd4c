/*
 * realloc_growth: containers grown with realloc, the way plain C code does.
 *
 * Two modes, one row each:
 *
 *   vectors  256 live vectors of 8-byte elements, grown by appends to
 *            randomly chosen vectors (so the growth of many vectors is
 *            interleaved, as in a program filling many arrays at once).
 *            Half the vectors double their capacity when full (the usual
 *            amortised policy); the other half call realloc on every
 *            append with exactly one more element (naive code).  Target
 *            lengths are log-uniform: doubling vectors up to 64 Ki elements
 *            (512 KiB, into the large-object range of most allocators),
 *            +1 vectors up to 4 Ki elements.  A finished vector is checked
 *            in full, then (doubling ones) shrunk to fit with realloc, or
 *            truncated to a third and shrunk, checked again and freed.
 *
 *   strings  512 live strings built by appending pieces of 1..24 characters
 *            with realloc to the exact new length plus the terminator (the
 *            classic strcat-into-realloc loop), to log-uniform target
 *            lengths of 16 B .. 64 KiB.  A finished string is checked; a
 *            quarter are then trimmed (realloc to a shorter length) and
 *            checked again; finished strings are kept in a ring of 2048
 *            (the oldest freed), so the heap holds a mix of long-lived
 *            results and growing buffers.
 *
 * Ideas: glibc's realloc benchtests and the growth patterns of real
 * programs (dynamic arrays, string builders); code written from scratch.
 * What it exercises: in-place growth (slack in size classes, growing into
 * a free neighbour, mremap for large blocks), the cost of copying when the
 * block has to move, and shrinking.
 *
 * Every realloc is followed by a check of the first and last element
 * already written (a moved block must carry its contents); finished
 * containers are checked in full.
 *
 * usage: realloc_growth [vectors|strings [scale]]
 *   scale  multiplies the number of appends (default 1; fractions allowed)
 *
 * stdout: one line "realloc_growth mode=M appends=N reallocs=R
 * finished=F checksum=0x..."; every figure depends only on the arguments.
 * A wrong element or a failed allocation prints a diagnostic to stderr and
 * exits with status 1.  ns per append and peak RSS ("vmhwm_kib=N") go to
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

/* Appends at scale 1, per mode. */
#define BASE_VECTOR_APPENDS 30000000.0
#define BASE_STRING_APPENDS 2500000.0

#define NVEC 256
#define NSTR 512
#define STR_RING 2048
#define TEXT_SIZE 4096 /* power of two */

static uint64_t rng_state = 0x7265616c6c6f6321ULL;
static uint64_t reallocs, finished, checksum;

static inline uint64_t next_rand(void)
{
    return splitmix_next(&rng_state);
}

/* Log-uniform integer in [lo, hi] (lo >= 1). */
static size_t log_uniform(size_t lo, size_t hi)
{
    unsigned lo_bits = 63u - (unsigned)__builtin_clzll(lo);
    unsigned hi_bits = 63u - (unsigned)__builtin_clzll(hi);
    unsigned b = lo_bits + (unsigned)(next_rand() % (hi_bits - lo_bits + 1));
    size_t base = (size_t)1 << b;
    size_t v = base + (size_t)(next_rand() % base);
    if (v < lo)
        v = lo;
    if (v > hi)
        v = hi;
    return v;
}

static void *xrealloc(void *p, size_t n, const char *what)
{
    void *q = realloc(p, n);
    if (q == NULL) {
        fprintf(stderr, "realloc_growth: realloc(%p, %zu) for %s failed: %s\n",
                p, n, what, strerror(errno));
        exit(1);
    }
    reallocs++;
    return q;
}

/* ---- vectors ------------------------------------------------------------ */

enum policy { GROW_DOUBLE, GROW_PLUS_ONE };

struct vec {
    uint64_t *data;
    size_t len, cap, target;
    uint64_t seed;
    enum policy policy;
};

static inline uint64_t vec_value(const struct vec *v, size_t i)
{
    return v->seed ^ ((uint64_t)i * 0xff51afd7ed558ccdULL);
}

static void vec_fail(const struct vec *v, size_t i, const char *when)
{
    fprintf(stderr,
            "realloc_growth: vector %p (%s, len %zu cap %zu): element %zu is "
            "%#" PRIx64 ", want %#" PRIx64 " (%s)\n",
            (void *)v->data, v->policy == GROW_DOUBLE ? "doubling" : "+1",
            v->len, v->cap, i, v->data[i], vec_value(v, i), when);
    exit(1);
}

/* First and last element survive a realloc. */
static inline void vec_spot_check(const struct vec *v, size_t n)
{
    if (n == 0)
        return;
    if (v->data[0] != vec_value(v, 0))
        vec_fail(v, 0, "after realloc");
    if (v->data[n - 1] != vec_value(v, n - 1))
        vec_fail(v, n - 1, "after realloc");
}

static uint64_t vec_full_check(const struct vec *v, const char *when)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < v->len; i++) {
        if (v->data[i] != vec_value(v, i))
            vec_fail(v, i, when);
        sum += v->data[i] >> 7;
    }
    return sum;
}

static void vec_start(struct vec *v)
{
    v->data = NULL;
    v->len = v->cap = 0;
    v->seed = next_rand();
    v->policy = (next_rand() & 1) ? GROW_DOUBLE : GROW_PLUS_ONE;
    v->target = v->policy == GROW_DOUBLE ? log_uniform(8, 65536)
                                         : log_uniform(4, 4096);
}

static void vec_finish(struct vec *v)
{
    uint64_t sum = vec_full_check(v, "finished");
    if (v->policy == GROW_DOUBLE) {
        uint64_t r = next_rand() % 4;
        if (r == 0) {
            /* truncate to a third, shrink */
            v->len = v->len / 3 + 1;
        }
        if (r <= 1) {
            /* shrink to fit */
            v->data = xrealloc(v->data, v->len * sizeof *v->data, "shrink");
            v->cap = v->len;
            sum += vec_full_check(v, "after shrink");
        }
    }
    checksum = mix64(checksum ^ sum ^ v->len);
    finished++;
    free(v->data);
    vec_start(v);
}

static uint64_t run_vectors(uint64_t appends)
{
    struct vec *vs = calloc(NVEC, sizeof *vs);
    if (vs == NULL) {
        fprintf(stderr, "realloc_growth: out of memory\n");
        exit(1);
    }
    for (unsigned i = 0; i < NVEC; i++)
        vec_start(&vs[i]);

    uint64_t done = 0;
    while (done < appends) {
        uint64_t r = next_rand();
        struct vec *v = &vs[r % NVEC];
        unsigned burst = 1 + (unsigned)((r >> 32) % 8);
        for (unsigned k = 0; k < burst && v->len < v->target; k++) {
            if (v->len == v->cap) {
                size_t ncap = v->policy == GROW_PLUS_ONE ? v->len + 1
                              : v->cap ? v->cap * 2 : 4;
                v->data = xrealloc(v->data, ncap * sizeof *v->data, "append");
                v->cap = ncap;
                vec_spot_check(v, v->len);
            }
            v->data[v->len] = vec_value(v, v->len);
            v->len++;
            done++;
        }
        if (v->len == v->target)
            vec_finish(v);
    }

    for (unsigned i = 0; i < NVEC; i++) {
        checksum = mix64(checksum ^ vec_full_check(&vs[i], "at exit"));
        free(vs[i].data);
    }
    free(vs);
    return done;
}

/* ---- strings ------------------------------------------------------------ */

static char text[TEXT_SIZE];

struct str {
    char *s;
    size_t len, target;
    uint64_t seed;
};

static inline char str_char(uint64_t seed, size_t pos)
{
    return text[(seed + pos) & (TEXT_SIZE - 1)];
}

static uint64_t str_check(const char *s, size_t len, uint64_t seed,
                          const char *when)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != str_char(seed, i)) {
            fprintf(stderr,
                    "realloc_growth: string %p (len %zu): char %zu is %#x, "
                    "want %#x (%s)\n",
                    (const void *)s, len, i, (unsigned char)s[i],
                    (unsigned char)str_char(seed, i), when);
            exit(1);
        }
        sum = sum * 31 + (unsigned char)s[i];
    }
    if (s[len] != '\0') {
        fprintf(stderr, "realloc_growth: string %p (len %zu): terminator "
                "lost (%s)\n", (const void *)s, len, when);
        exit(1);
    }
    return sum;
}

static void str_start(struct str *t)
{
    t->s = NULL;
    t->len = 0;
    t->seed = next_rand();
    t->target = log_uniform(16, 65536);
}

static uint64_t run_strings(uint64_t appends)
{
    struct str *ss = calloc(NSTR, sizeof *ss);
    char **ring = calloc(STR_RING, sizeof *ring);
    size_t *ring_len = calloc(STR_RING, sizeof *ring_len);
    uint64_t *ring_seed = calloc(STR_RING, sizeof *ring_seed);
    size_t ring_pos = 0;
    if (ss == NULL || ring == NULL || ring_len == NULL || ring_seed == NULL) {
        fprintf(stderr, "realloc_growth: out of memory\n");
        exit(1);
    }

    uint64_t h = 0x5eed;
    for (unsigned i = 0; i < TEXT_SIZE; i++) {
        h = mix64(h);
        text[i] = (char)(' ' + h % 95); /* printable ASCII */
    }
    for (unsigned i = 0; i < NSTR; i++)
        str_start(&ss[i]);

    uint64_t done = 0;
    while (done < appends) {
        uint64_t r = next_rand();
        struct str *t = &ss[r % NSTR];
        size_t piece = 1 + (size_t)((r >> 32) % 24);
        if (piece > t->target - t->len)
            piece = t->target - t->len;

        t->s = xrealloc(t->s, t->len + piece + 1, "append");
        if (t->len > 0 && (t->s[0] != str_char(t->seed, 0) ||
                           t->s[t->len - 1] != str_char(t->seed, t->len - 1))) {
            fprintf(stderr, "realloc_growth: string %p (len %zu) lost its "
                    "contents in realloc\n", (void *)t->s, t->len);
            exit(1);
        }
        for (size_t i = 0; i < piece; i++)
            t->s[t->len + i] = str_char(t->seed, t->len + i);
        t->len += piece;
        t->s[t->len] = '\0';
        done++;

        if (t->len < t->target)
            continue;

        /* finished */
        uint64_t sum = str_check(t->s, t->len, t->seed, "finished");
        if (next_rand() % 4 == 0) {
            t->len = t->len / 2 + (size_t)(next_rand() % (t->len / 2 + 1));
            t->s[t->len] = '\0';
            t->s = xrealloc(t->s, t->len + 1, "trim");
            sum += str_check(t->s, t->len, t->seed, "after trim");
        }
        checksum = mix64(checksum ^ sum ^ t->len);
        finished++;

        if (ring[ring_pos] != NULL) {
            checksum = mix64(checksum ^ str_check(ring[ring_pos],
                                                  ring_len[ring_pos],
                                                  ring_seed[ring_pos],
                                                  "in ring"));
            free(ring[ring_pos]);
        }
        ring[ring_pos] = t->s;
        ring_len[ring_pos] = t->len;
        ring_seed[ring_pos] = t->seed;
        ring_pos = (ring_pos + 1) % STR_RING;
        str_start(t);
    }

    for (unsigned i = 0; i < NSTR; i++) {
        if (ss[i].s != NULL)
            checksum = mix64(checksum ^ str_check(ss[i].s, ss[i].len,
                                                  ss[i].seed, "at exit"));
        free(ss[i].s);
    }
    for (unsigned i = 0; i < STR_RING; i++) {
        if (ring[i] != NULL)
            checksum = mix64(checksum ^ str_check(ring[i], ring_len[i],
                                                  ring_seed[i], "at exit"));
        free(ring[i]);
    }
    free(ss);
    free(ring);
    free(ring_len);
    free(ring_seed);
    return done;
}

static void usage(void)
{
    fprintf(stderr, "usage: realloc_growth [vectors|strings [scale]]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *mode = "vectors";
    double scale = 1.0;

    if (argc > 3)
        usage();
    if (argc > 1) {
        mode = argv[1];
        if (strcmp(mode, "vectors") != 0 && strcmp(mode, "strings") != 0)
            usage();
    }
    if (argc > 2) {
        scale = parse_scale(argv[2], usage);
    }

    int vectors = strcmp(mode, "vectors") == 0;
    uint64_t want = (uint64_t)((vectors ? BASE_VECTOR_APPENDS
                                        : BASE_STRING_APPENDS) * scale + 0.5);
    if (want == 0)
        want = 1;

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t appends = vectors ? run_vectors(want) : run_strings(want);
    clock_gettime(CLOCK_MONOTONIC, &t1);

    double ns = elapsed_ns(&t0, &t1);
    printf("realloc_growth mode=%s appends=%" PRIu64 " reallocs=%" PRIu64
           " finished=%" PRIu64 " checksum=%#018" PRIx64 "\n",
           mode, appends, reallocs, finished, checksum);
    fprintf(stderr, "realloc_growth: %.2f ns/append vmhwm_kib=%ld\n",
            ns / (double)appends, peak_rss_kib());
    return 0;
}
