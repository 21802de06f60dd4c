/*
 * fuzz_alloc.c: a libFuzzer target that reads its input as a program of
 * allocator calls and checks every block it gets.
 *
 * Calls: the core's whole family (malloc, calloc, realloc, aligned, usable
 * size, trim) through its internal names, which the sanitizers do not
 * intercept; the explicit API with several instances (thread-safe and
 * single-thread), alloc/resize/remap/realloc and deinit with live blocks;
 * an arena over an instance; a fixed buffer.  A worker thread takes blocks
 * the fuzz thread hands it and frees or reallocates them, so frees cross
 * threads both ways, and it can be made to exit (its heap is abandoned with
 * blocks still live).
 *
 * Checks: every block is aligned as asked and the core's blocks have a
 * usable size of at least the request; every block holds a pattern derived
 * from its id (the core's over their whole usable size, large blocks in
 * samples: see DENSE_BYTES), verified before
 * each free, realloc and resize and after a realloc over the part that must
 * survive; calloc's and zeroed blocks read zero; impossible sizes fail with
 * ENOMEM; a failed realloc leaves its block intact; deinit reports exactly
 * the blocks still live.  Any mismatch prints a line and traps.
 *
 * Input format: a byte picks the operation, the next bytes its arguments;
 * a short input reads zeros.  The fuzzer's mutations need nothing more.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "gpa.h"
#include "internal.h"
#include "size_class.h"

/* ---- bounds ------------------------------------------------------------- */

/* Blocks tracked at once (a slot byte picks one). */
#define SLOT_COUNT 64
/* Explicit instances alive at once. */
#define INSTANCE_COUNT 3
/* Requested bytes live at once: allocations that would pass it are skipped,
 * so the fuzzer stays far below its RSS limit. */
#define LIVE_CAP ((size_t)64 << 20)
/* Largest request: two segments, so large blocks span more than one. */
#define MAX_SIZE (2 * GPA_SEGMENT_SIZE)
/* Largest alignment: two segments, past the size where each over-aligned
 * block gets a mapping of its own (half a segment). */
#define MAX_ALIGN_SHIFT (GPA_SEGMENT_SHIFT + 1)
/* Arenas and fixed buffers: alignments up to a slab page. */
#define BUMP_MAX_ALIGN_SHIFT GPA_PAGE_SHIFT
/* The fixed buffer's memory. */
#define FIXED_BUFFER_SIZE ((size_t)256 << 10)
/* Impossible requests: at least the whole address space. */
#define IMPOSSIBLE_MIN ((size_t)1 << OS_ADDRESS_BITS)

/* ---- failures ------------------------------------------------------------ */

static __attribute__((noreturn, format(printf, 1, 2))) void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("fuzz_alloc: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  __builtin_trap();
}

/* ---- input --------------------------------------------------------------- */

typedef struct input {
  const uint8_t *next;
  size_t left;
} input_t;

static uint8_t take8(input_t *in) {
  if (in->left == 0) return 0;
  in->left--;
  return *in->next++;
}

static uint16_t take16(input_t *in) {
  uint16_t lo = take8(in);
  return (uint16_t)(lo | (uint16_t)take8(in) << 8);
}

static uint32_t take32(input_t *in) {
  uint32_t lo = take16(in);
  return lo | (uint32_t)take16(in) << 16;
}

static size_t clamp_size(int64_t size) { return size < 0 ? 0 : (size_t)size; }

/* How far from an edge take_size() lands: a class edge within one 16-byte
 * step (the classes' finest spacing); the small/large boundary and segment
 * multiples within +-8 KiB (a signed byte times EDGE_STEP). */
#define CLASS_EDGE_REACH GPA_MIN_ALIGN
#define EDGE_STEP 64
/* Page multiples up to 128 KiB: past the 64 KiB slab page. */
#define PAGE_MULTIPLES 32

/* A request size, clustered where the allocator changes behaviour.  Most
 * are small, where most of the code is; large ones cost each run page
 * faults and pattern bytes. */
static size_t take_size(input_t *in) {
  uint8_t mode = take8(in);
  int64_t delta = (int8_t)take8(in);
  switch (mode % 12) {
  case 0: return take8(in);
  case 1: return take16(in) % (GPA_DIRECT_MAX + 1); /* the direct-lookup sizes */
  case 2:
  case 3: /* around a size class's edge */
    return clamp_size((int64_t)size_class_block_size(take8(in) % GPA_CLASS_COUNT) + delta % (CLASS_EDGE_REACH + 1));
  case 4: return clamp_size((int64_t)(1 + take8(in) % PAGE_MULTIPLES) * (int64_t)os_page_size() + delta);
  case 5:
  case 6: /* any small size, spread over the doublings rather than the bytes */
    return take32(in) % ((GPA_SMALL_MAX >> take8(in) % 16) + 1);
  case 7: return (size_t)GPA_MIN_ALIGN * take8(in);
  case 8: return clamp_size((int64_t)GPA_SMALL_MAX + delta * EDGE_STEP);
  case 9: /* large, the smaller ones more often */
    return GPA_SMALL_MAX + (take32(in) % (MAX_SIZE - GPA_SMALL_MAX) >> take8(in) % 4);
  case 10: /* around a segment multiple: a large block's header sits in front */
    return clamp_size((int64_t)(1 + take8(in) % 2) * (int64_t)GPA_SEGMENT_SIZE + delta * EDGE_STEP);
  default: return take16(in) % (GPA_SMALL_MAX / 16);
  }
}

static size_t take_alignment(input_t *in, unsigned max_shift) {
  return (size_t)1 << (take8(in) % (max_shift + 1));
}

/* ---- patterns ------------------------------------------------------------ */

/* The pattern loops touch only the library's memory, which AddressSanitizer
 * does not track, and their branches are not the library's: instrumenting
 * them would only slow every run down. */
#define NOT_INSTRUMENTED __attribute__((no_sanitize("address", "undefined", "coverage")))

/* Byte i of block `id`'s pattern is byte i % 8 of word i / 8: a copy that
 * lands shifted, short or from another block does not match.  The odd
 * multipliers are SplitMix64's, to spread ids and offsets over the word. */
NOT_INSTRUMENTED static uint64_t pattern_word(uint32_t id, size_t word) {
  uint64_t x = (uint64_t)id * 0x9E3779B97F4A7C15u + (uint64_t)word * 0xBF58476D1CE4E5B9u;
  return x ^ (x >> 29);
}

NOT_INSTRUMENTED static uint8_t pattern_byte(uint32_t id, size_t i) {
  return (uint8_t)(pattern_word(id, i / 8) >> (8 * (i % 8)));
}

/* Blocks past GPA_SMALL_MAX carry the pattern only where bugs show: all
 * of their first GPA_SMALL_MAX bytes (everything a move to a small block
 * keeps), their last SAMPLE_TAIL bytes, and SAMPLE_BYTES at the start of
 * every SAMPLE_STRIDE between.  Writing and reading every byte of every
 * large block spent most of each run in page faults. */
#define DENSE_BYTES GPA_SMALL_MAX
#define SAMPLE_TAIL GPA_PAGE_SIZE
#define SAMPLE_STRIDE GPA_PAGE_SIZE
#define SAMPLE_BYTES 64

/* The first run of patterned bytes at or after offset `i` of a block
 * patterned up to `filled`: [*start, *end), `end` possibly past `filled`. */
NOT_INSTRUMENTED static void next_run(size_t i, size_t filled, size_t *start, size_t *end) {
  size_t tail = filled > SAMPLE_TAIL ? filled - SAMPLE_TAIL : 0;
  if (i < DENSE_BYTES) {
    *start = i;
    *end = DENSE_BYTES;
  } else if (i % SAMPLE_STRIDE < SAMPLE_BYTES) {
    *start = i;
    *end = i - i % SAMPLE_STRIDE + SAMPLE_BYTES;
  } else {
    *start = i - i % SAMPLE_STRIDE + SAMPLE_STRIDE;
    *end = *start + SAMPLE_BYTES;
  }
  if (*start >= tail) *start = i > tail ? i : tail;
  if (*end > tail) *end = SIZE_MAX;
}

NOT_INSTRUMENTED static void fill_run(uint8_t *p, size_t from, size_t to, uint32_t id) {
  size_t i = from;
  for (; i < to && i % 8 != 0; i++) p[i] = pattern_byte(id, i);
  for (; i + 8 <= to; i += 8) {
    uint64_t w = pattern_word(id, i / 8);
    memcpy(p + i, &w, 8);
  }
  for (; i < to; i++) p[i] = pattern_byte(id, i);
}

/* The first offset in [from, to) that differs from the pattern, or `to`. */
NOT_INSTRUMENTED static size_t check_run(const uint8_t *p, size_t from, size_t to, uint32_t id) {
  size_t i = from;
  for (; i < to && i % 8 != 0; i++)
    if (p[i] != pattern_byte(id, i)) return i;
  for (; i + 8 <= to; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    if (w != pattern_word(id, i / 8)) break;
  }
  for (; i < to; i++)
    if (p[i] != pattern_byte(id, i)) return i;
  return to;
}

/* Write block `id`'s pattern over its first `filled` bytes. */
static void pattern_fill(uint8_t *p, size_t filled, uint32_t id) {
  size_t start, end;
  for (size_t i = 0; i < filled; i = end) {
    next_run(i, filled, &start, &end);
    if (start >= filled) break;
    if (end > filled) end = filled;
    fill_run(p, start, end, id);
  }
}

/* The pattern a block filled up to `filled` carries, over its first `len`
 * bytes. */
static void pattern_check(const uint8_t *p, size_t len, size_t filled, uint32_t id, const char *when) {
  size_t start, end;
  for (size_t i = 0; i < len; i = end) {
    next_run(i, filled, &start, &end);
    if (start >= len) break;
    if (end > len) end = len;
    size_t bad = check_run(p, start, end, id);
    if (bad != end)
      fail("%s: block %u at %p: byte %zu of %zu is 0x%02x, expected 0x%02x", when, id, (const void *)p, bad, len,
           p[bad], pattern_byte(id, bad));
  }
}

/* A fresh zeroed block reads zero where a pattern would be checked. */
static void zero_check(const uint8_t *p, size_t len, const char *what) {
  size_t start, end;
  for (size_t i = 0; i < len; i = end) {
    next_run(i, len, &start, &end);
    if (start >= len) break;
    if (end > len) end = len;
    for (size_t j = start; j < end; j++)
      if (p[j] != 0) fail("%s: %p byte %zu of %zu is 0x%02x, expected 0", what, (const void *)p, j, len, p[j]);
  }
}

/* ---- tracked blocks ------------------------------------------------------ */

typedef enum kind { KIND_NONE, KIND_CORE, KIND_INSTANCE, KIND_ARENA, KIND_FIXED } kind_t;

typedef struct block {
  uint8_t *p;
  size_t len;    /* bytes asked for */
  size_t filled; /* bytes holding the pattern: the usable size for the core's blocks */
  size_t align;
  uint32_t id;
  uint8_t kind;
  uint8_t owner; /* instance index for KIND_INSTANCE */
  bool away;     /* handed to the worker: the fuzz thread keeps off */
} block_t;

static struct {
  block_t slots[SLOT_COUNT];
  size_t live_bytes;
  uint32_t next_id;
  gpa_t inst[INSTANCE_COUNT];
  bool inst_live[INSTANCE_COUNT];
  bool inst_shared[INSTANCE_COUNT]; /* thread-safe: the worker may use it */
  gpa_arena_t arena;
  bool arena_live;
  uint8_t arena_owner;
  gpa_fixed_buffer_t fixed;
  bool fixed_live;
} S;

static uint8_t fixed_memory[FIXED_BUFFER_SIZE] __attribute__((aligned(1 << BUMP_MAX_ALIGN_SHIFT)));

static void block_check(const block_t *b, const char *when) { pattern_check(b->p, b->filled, b->filled, b->id, when); }

static bool fits(size_t len) { return len <= LIVE_CAP - S.live_bytes; }

static gpa_allocator_t block_allocator(const block_t *b) {
  switch (b->kind) {
  case KIND_INSTANCE: return gpa_allocator(&S.inst[b->owner]);
  case KIND_ARENA: return gpa_arena_allocator(&S.arena);
  default: return gpa_fixed_buffer_allocator(&S.fixed);
  }
}

static void check_aligned(const void *p, size_t align, const char *what) {
  if ((uintptr_t)p % align != 0) fail("%s: %p is not aligned to %zu", what, p, align);
}

static void check_usable(const block_t *b, size_t usable, const char *what) {
  if (usable < b->len)
    fail("%s: usable size %zu of %p is below the %zu bytes asked for", what, usable, (void *)b->p, b->len);
}

/* Take a fresh block into `b`: checked, then filled with its pattern.  The
 * core's blocks are filled over their whole usable size, which README says
 * may all be written. */
static void block_take(block_t *b, void *p, size_t len, size_t align, kind_t kind, uint8_t owner, bool zeroed,
                       const char *what) {
  if (p == NULL) fail("%s: %zu bytes at alignment %zu failed", what, len, align);
  check_aligned(p, align, what);
  *b = (block_t){.p = p, .len = len, .filled = len, .align = align, .id = ++S.next_id, .kind = (uint8_t)kind,
                 .owner = owner};
  if (zeroed) zero_check(p, len, what);
  if (kind == KIND_CORE) {
    b->filled = gpa_core_usable_size(p);
    check_usable(b, b->filled, what);
  }
  pattern_fill(b->p, b->filled, b->id);
  S.live_bytes += len;
}

/* A core block after realloc: the part both sizes share kept its pattern;
 * the rest is filled. */
static void core_realloc(block_t *b, size_t len, const char *what) {
  block_check(b, what);
  uint8_t *q = gpa_core_realloc(b->p, len);
  if (len == 0) {
    if (q != NULL) fail("%s: realloc(%p, 0) returned %p, not NULL", what, (void *)b->p, (void *)q);
    *b = (block_t){0};
    return;
  }
  if (q == NULL) fail("%s: realloc(%p, %zu) failed", what, (void *)b->p, len);
  check_aligned(q, GPA_MIN_ALIGN, what);
  size_t kept = b->filled < len ? b->filled : len;
  pattern_check(q, kept, b->filled, b->id, what);
  b->p = q;
  b->len = len;
  b->align = GPA_MIN_ALIGN; /* realloc keeps only malloc's alignment */
  b->filled = gpa_core_usable_size(q);
  check_usable(b, b->filled, what);
  pattern_fill(q, b->filled, b->id);
}

/* An instance block through the interface: resize (in place or not at all),
 * remap (may move, may refuse) or realloc (moves if it must). */
static void instance_realloc(block_t *b, size_t len, uint8_t how, const char *what) {
  block_check(b, what);
  gpa_allocator_t a = gpa_allocator(&S.inst[b->owner]);
  uint8_t *q;
  switch (how % 3) {
  case 0:
    if (len == 0) len = 1;
    q = gpa_raw_resize(a, b->p, b->len, b->align, len) ? b->p : NULL;
    break;
  case 1:
    if (len == 0) len = 1;
    q = gpa_raw_remap(a, b->p, b->len, b->align, len);
    break;
  default:
    q = gpa_raw_realloc(a, b->p, b->len, len, 1, b->align);
    if (len == 0) {
      if (q != NULL) fail("%s: gpa_raw_realloc to 0 returned %p", what, (void *)q);
      *b = (block_t){0};
      return;
    }
    if (q == NULL) fail("%s: gpa_raw_realloc(%p, %zu -> %zu) failed", what, (void *)b->p, b->len, len);
    break;
  }
  if (q == NULL) { /* refused: the block is as it was */
    block_check(b, what);
    return;
  }
  check_aligned(q, b->align, what);
  size_t kept = b->len < len ? b->len : len;
  pattern_check(q, kept, b->filled, b->id, what);
  pattern_fill(q, len, b->id);
  b->p = q;
  b->len = b->filled = len;
}

/* Give a block back through whatever made it. */
static void block_release(block_t *b, const char *what) {
  block_check(b, what);
  if (b->kind == KIND_CORE)
    gpa_core_free(b->p);
  else
    gpa_raw_free(block_allocator(b), b->p, b->len, b->align);
  *b = (block_t){0};
}

/* ---- the worker thread ----------------------------------------------------
 * Jobs name a slot marked away; only the worker touches it until
 * worker_sync() hands every away slot back. */

typedef enum job_action { JOB_FREE, JOB_REALLOC, JOB_USABLE } job_action_t;

typedef struct job {
  uint8_t slot;
  uint8_t action;
  uint8_t how;
  size_t len;
} job_t;

static struct {
  pthread_mutex_t lock;
  pthread_cond_t wake, idle;
  pthread_t thread;
  bool running, quit, busy;
  job_t queue[SLOT_COUNT]; /* each slot is away at most once */
  size_t head, count;
} W = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER};

static void worker_do(const job_t *job) {
  block_t *b = &S.slots[job->slot];
  switch (job->action) {
  case JOB_FREE: block_release(b, "worker free"); break;
  case JOB_REALLOC:
    if (b->kind == KIND_CORE)
      core_realloc(b, job->len, "worker realloc");
    else
      instance_realloc(b, job->len, job->how, "worker instance realloc");
    break;
  default:
    if (b->kind == KIND_CORE) check_usable(b, gpa_core_usable_size(b->p), "worker usable size");
    block_check(b, "worker check");
    break;
  }
}

static void *worker_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&W.lock);
  for (;;) {
    while (W.count == 0 && !W.quit) pthread_cond_wait(&W.wake, &W.lock);
    if (W.count == 0) break;
    job_t job = W.queue[W.head];
    W.head = (W.head + 1) % SLOT_COUNT;
    W.count--;
    W.busy = true;
    pthread_mutex_unlock(&W.lock);
    worker_do(&job);
    pthread_mutex_lock(&W.lock);
    W.busy = false;
    if (W.count == 0) pthread_cond_broadcast(&W.idle);
  }
  pthread_mutex_unlock(&W.lock);
  return NULL;
}

static void worker_post(const job_t *job) {
  if (!W.running) {
    W.quit = false;
    if (pthread_create(&W.thread, NULL, worker_main, NULL) != 0) fail("pthread_create failed");
    W.running = true;
  }
  S.slots[job->slot].away = true;
  pthread_mutex_lock(&W.lock);
  W.queue[(W.head + W.count) % SLOT_COUNT] = *job;
  W.count++;
  pthread_cond_signal(&W.wake);
  pthread_mutex_unlock(&W.lock);
}

/* Wait until the worker has done every job, then take its slots back. */
static void worker_sync(void) {
  pthread_mutex_lock(&W.lock);
  while (W.count != 0 || W.busy) pthread_cond_wait(&W.idle, &W.lock);
  pthread_mutex_unlock(&W.lock);
  S.live_bytes = 0;
  for (size_t i = 0; i < SLOT_COUNT; i++) {
    S.slots[i].away = false;
    S.live_bytes += S.slots[i].len;
  }
}

/* The worker exits with whatever it allocated still live: its heap goes to
 * the instance's pool and those blocks are freed from here. */
static void worker_exit(void) {
  if (!W.running) return;
  worker_sync();
  pthread_mutex_lock(&W.lock);
  W.quit = true;
  pthread_cond_signal(&W.wake);
  pthread_mutex_unlock(&W.lock);
  pthread_join(W.thread, NULL);
  W.running = false;
}

/* ---- instances, arena, fixed buffer -------------------------------------- */

static size_t instance_blocks(uint8_t k, size_t *bytes) {
  size_t count = 0;
  *bytes = 0;
  for (size_t i = 0; i < SLOT_COUNT; i++)
    if (S.slots[i].kind == KIND_INSTANCE && S.slots[i].owner == k) {
      count++;
      *bytes += S.slots[i].len;
    }
  return count;
}

static void drop_kind(kind_t kind, const char *what) {
  for (size_t i = 0; i < SLOT_COUNT; i++) {
    block_t *b = &S.slots[i];
    if (b->kind != kind) continue;
    block_check(b, what);
    S.live_bytes -= b->len;
    *b = (block_t){0};
  }
}

static void arena_deinit(void) {
  if (!S.arena_live) return;
  drop_kind(KIND_ARENA, "arena deinit");
  gpa_arena_deinit(&S.arena);
  if (gpa_arena_capacity(&S.arena) != 0) fail("arena deinit left %zu bytes", gpa_arena_capacity(&S.arena));
  S.arena_live = false;
}

/* Deinit with the blocks still live that the table says: the count must
 * match exactly, the bytes be at least those asked for. */
static void instance_deinit(uint8_t k) {
  if (!S.inst_live[k]) return;
  worker_sync();
  if (S.arena_live && S.arena_owner == k) arena_deinit();
  size_t bytes, count = instance_blocks(k, &bytes);
  if (gpa_live_count(&S.inst[k]) != count)
    fail("instance %u: gpa_live_count %zu, %zu blocks live", k, gpa_live_count(&S.inst[k]), count);
  for (size_t i = 0; i < SLOT_COUNT; i++)
    if (S.slots[i].kind == KIND_INSTANCE && S.slots[i].owner == k)
      block_check(&S.slots[i], "instance deinit");
  gpa_status_t status = gpa_deinit(&S.inst[k]);
  if (status != (count ? GPA_LEAK : GPA_OK) || S.inst[k].leaked_blocks != count || S.inst[k].leaked_bytes < bytes)
    fail("instance %u deinit: status %d, %zu leaked blocks (%zu bytes), expected %zu blocks (>= %zu bytes)", k,
         (int)status, S.inst[k].leaked_blocks, S.inst[k].leaked_bytes, count, bytes);
  for (size_t i = 0; i < SLOT_COUNT; i++)
    if (S.slots[i].kind == KIND_INSTANCE && S.slots[i].owner == k) {
      S.live_bytes -= S.slots[i].len;
      S.slots[i] = (block_t){0};
    }
  S.inst_live[k] = false;
}

/* Who answers gpa_owns for each block: its own instance only. */
static void instance_check(void) {
  worker_sync();
  for (uint8_t k = 0; k < INSTANCE_COUNT; k++) {
    if (!S.inst_live[k]) continue;
    size_t bytes, count = instance_blocks(k, &bytes);
    /* The arena's chunks are blocks of its instance too. */
    bool arena_chunks = S.arena_live && S.arena_owner == k && gpa_arena_capacity(&S.arena) != 0;
    if (!arena_chunks && gpa_live_count(&S.inst[k]) != count)
      fail("instance %u: gpa_live_count %zu, %zu blocks live", k, gpa_live_count(&S.inst[k]), count);
    for (size_t i = 0; i < SLOT_COUNT; i++) {
      const block_t *b = &S.slots[i];
      if (b->kind != KIND_INSTANCE && b->kind != KIND_CORE) continue;
      bool mine = b->kind == KIND_INSTANCE && b->owner == k;
      if (gpa_owns(&S.inst[k], b->p) != mine)
        fail("gpa_owns(instance %u, %p) is %d, the block is %s", k, (void *)b->p, !mine, mine ? "its" : "not its");
    }
  }
}

/* ---- operations ---------------------------------------------------------- */

enum {
  OP_MALLOC,
  OP_CALLOC,
  OP_REALLOC,
  OP_ALIGNED,
  OP_FREE,
  OP_USABLE,
  OP_IMPOSSIBLE,
  OP_TRIM,
  OP_HAND_OVER,
  OP_WORKER_SYNC,
  OP_WORKER_EXIT,
  OP_INSTANCE_INIT,
  OP_INSTANCE_DEINIT,
  OP_INSTANCE_ALLOC,
  OP_INSTANCE_REALLOC,
  OP_INSTANCE_CHECK,
  OP_ARENA_ALLOC,
  OP_ARENA_RESIZE,
  OP_ARENA_RESET,
  OP_FIXED_ALLOC,
  OP_FIXED_RESIZE,
  OP_FIXED_RESET,
  OP_CHECK_ALL,
  OP_COUNT
};

/* A slot for a new block: its old occupant, if any, is freed first. */
static block_t *take_free_slot(input_t *in) {
  block_t *b = &S.slots[take8(in) % SLOT_COUNT];
  if (b->away) return NULL;
  if (b->kind != KIND_NONE) {
    S.live_bytes -= b->len;
    block_release(b, "free before reuse");
  }
  return b;
}

/* A slot holding a block the fuzz thread may touch, of one of `kinds` (a
 * bit per kind), or NULL. */
static block_t *take_live_slot(input_t *in, unsigned kinds) {
  block_t *b = &S.slots[take8(in) % SLOT_COUNT];
  if (b->away || b->kind == KIND_NONE || !(kinds & (1u << b->kind))) return NULL;
  return b;
}

#define KINDS_ALL ((1u << KIND_CORE) | (1u << KIND_INSTANCE) | (1u << KIND_ARENA) | (1u << KIND_FIXED))

static void op_calloc(input_t *in) {
  size_t total = take_size(in);
  size_t count = 1 + take8(in) % 16; /* elements: a few */
  size_t size = total / count;
  if (take8(in) % 8 == 0) { /* one call in eight: count * size overflows */
    size = 2 + take8(in);
    count = SIZE_MAX / size + 1 + take8(in);
    errno = 0;
    void *p = gpa_core_calloc(count, size);
    if (p != NULL || errno != ENOMEM) fail("calloc(%zu, %zu) overflows but gave %p, errno %d", count, size, p, errno);
    return;
  }
  if (!fits(count * size)) return;
  block_t *b = take_free_slot(in);
  if (b != NULL) block_take(b, gpa_core_calloc(count, size), count * size, GPA_MIN_ALIGN, KIND_CORE, 0, true, "calloc");
}

/* Requests no memory can satisfy fail with ENOMEM, and a failed realloc
 * leaves its block as it was. */
static void op_impossible(input_t *in) {
  size_t size = IMPOSSIBLE_MIN + ((size_t)take32(in) << 32 | take32(in)) % (SIZE_MAX - IMPOSSIBLE_MIN);
  void *p;
  const char *what;
  errno = 0;
  switch (take8(in) % 3) {
  case 0:
    what = "malloc";
    p = gpa_core_malloc(size);
    break;
  case 1:
    what = "aligned";
    p = gpa_core_aligned(take_alignment(in, MAX_ALIGN_SHIFT), size);
    break;
  default: {
    what = "realloc";
    block_t *b = take_live_slot(in, 1u << KIND_CORE);
    if (b == NULL) return;
    p = gpa_core_realloc(b->p, size);
    block_check(b, "after a failed realloc");
    break;
  }
  }
  if (p != NULL || errno != ENOMEM) fail("%s of %zu bytes gave %p, errno %d", what, size, p, errno);
}

static void op_hand_over(input_t *in) {
  uint8_t slot = take8(in) % SLOT_COUNT;
  block_t *b = &S.slots[slot];
  job_t job = {.slot = slot, .action = take8(in) % 3, .how = take8(in)};
  job.len = take_size(in);
  bool shared = b->kind == KIND_CORE || (b->kind == KIND_INSTANCE && S.inst_shared[b->owner]);
  if (b->away || !shared) return;
  if (job.action == JOB_REALLOC) {
    if (job.len > b->len && !fits(job.len - b->len)) return;
    if (job.len > b->len) S.live_bytes += job.len - b->len; /* worker_sync() recounts */
  }
  worker_post(&job);
}

static void op_instance_alloc(input_t *in) {
  uint8_t k = take8(in) % INSTANCE_COUNT;
  size_t len = take_size(in);
  size_t align = take_alignment(in, MAX_ALIGN_SHIFT);
  uint8_t how = take8(in);
  if (!S.inst_live[k] || !fits(len)) return;
  block_t *b = take_free_slot(in);
  if (b == NULL) return;
  gpa_allocator_t a = gpa_allocator(&S.inst[k]);
  void *p;
  bool zeroed = false;
  switch (how % 3) {
  case 0: p = gpa_raw_alloc(a, len, align); break;
  case 1:
    p = gpa_raw_alloc_zeroed(a, len, 1, align);
    zeroed = true;
    break;
  default: /* the typed helpers' inline path, at the type's alignment */
    p = gpa_alloc(a, uint8_t, len);
    align = _Alignof(uint8_t);
    break;
  }
  block_take(b, p, len, align, KIND_INSTANCE, k, zeroed, "instance alloc");
  if (gpa_core_usable_size(p) < len) fail("instance block %p: usable size below %zu", p, len);
}

/* Arena and fixed buffer share the bump semantics: allocations may fail
 * (the fixed buffer when full), only the newest can be freed or resized. */
static void bump_alloc(input_t *in, kind_t kind) {
  size_t len = take_size(in);
  size_t align = take_alignment(in, BUMP_MAX_ALIGN_SHIFT);
  if (kind == KIND_ARENA && !S.arena_live) {
    uint8_t k = take8(in) % INSTANCE_COUNT;
    if (!S.inst_live[k]) return;
    gpa_arena_init(&S.arena, gpa_allocator(&S.inst[k]));
    S.arena_live = true;
    S.arena_owner = k;
  }
  if (kind == KIND_FIXED && !S.fixed_live) {
    gpa_fixed_buffer_init(&S.fixed, fixed_memory, FIXED_BUFFER_SIZE);
    S.fixed_live = true;
  }
  if (!fits(len)) return;
  block_t *b = take_free_slot(in);
  if (b == NULL) return;
  block_t probe = {.kind = (uint8_t)kind};
  gpa_allocator_t a = block_allocator(&probe);
  void *p = align == 1 && kind == KIND_ARENA ? (void *)gpa_alloc(a, uint8_t, len) : gpa_raw_alloc(a, len, align);
  if (p == NULL && kind == KIND_FIXED) return; /* full */
  block_take(b, p, len, align, kind, 0, false, kind == KIND_ARENA ? "arena alloc" : "fixed alloc");
  if (kind == KIND_FIXED &&
      ((uint8_t *)p < fixed_memory || (uint8_t *)p + len > fixed_memory + FIXED_BUFFER_SIZE ||
       (len != 0 && !gpa_fixed_buffer_owns(&S.fixed, p))))
    fail("fixed buffer block %p (%zu bytes) is outside its buffer", p, len);
}

static void bump_resize(input_t *in, kind_t kind) {
  block_t *b = take_live_slot(in, 1u << kind);
  size_t len = take_size(in);
  if (b == NULL || (len > b->len && !fits(len - b->len))) return;
  block_check(b, "bump resize");
  if (gpa_raw_resize(block_allocator(b), b->p, b->len, b->align, len)) {
    size_t kept = b->len < len ? b->len : len;
    pattern_check(b->p, kept, b->filled, b->id, "bump resize");
    pattern_fill(b->p, len, b->id);
    S.live_bytes = S.live_bytes - b->len + len;
    b->len = b->filled = len;
  } else {
    block_check(b, "refused bump resize");
  }
}

static void arena_reset(input_t *in) {
  uint8_t mode = take8(in) % 4;
  size_t limit = take_size(in);
  if (!S.arena_live) return;
  if (mode == 3) {
    arena_deinit();
    return;
  }
  drop_kind(KIND_ARENA, "arena reset");
  gpa_arena_reset(&S.arena, (gpa_arena_reset_mode_t)mode, limit);
  if (mode == GPA_ARENA_FREE_ALL && gpa_arena_capacity(&S.arena) != 0)
    fail("arena reset (free all) kept %zu bytes", gpa_arena_capacity(&S.arena));
}

static void run_op(input_t *in) {
  block_t *b;
  switch (take8(in) % OP_COUNT) {
  case OP_MALLOC: {
    size_t len = take_size(in);
    if (fits(len) && (b = take_free_slot(in)) != NULL)
      block_take(b, gpa_core_malloc(len), len, GPA_MIN_ALIGN, KIND_CORE, 0, false, "malloc");
    break;
  }
  case OP_CALLOC: op_calloc(in); break;
  case OP_REALLOC: {
    size_t len = take_size(in);
    uint8_t slot = take8(in) % SLOT_COUNT;
    b = &S.slots[slot];
    if (b->away || !fits(len)) break;
    if (b->kind == KIND_NONE) { /* realloc(NULL, len) is malloc */
      block_take(b, gpa_core_realloc(NULL, len), len, GPA_MIN_ALIGN, KIND_CORE, 0, false, "realloc(NULL)");
    } else if (b->kind == KIND_CORE) {
      S.live_bytes -= b->len;
      core_realloc(b, len, "realloc");
      S.live_bytes += b->len;
    }
    break;
  }
  case OP_ALIGNED: {
    size_t align = take_alignment(in, MAX_ALIGN_SHIFT);
    size_t len = take_size(in);
    if (fits(len) && (b = take_free_slot(in)) != NULL)
      block_take(b, gpa_core_aligned(align, len), len, align, KIND_CORE, 0, false, "aligned");
    break;
  }
  case OP_FREE:
    if ((b = take_live_slot(in, KINDS_ALL)) != NULL) {
      S.live_bytes -= b->len;
      block_release(b, "free");
    }
    break;
  case OP_USABLE:
    if ((b = take_live_slot(in, 1u << KIND_CORE)) != NULL) {
      size_t usable = gpa_core_usable_size(b->p);
      check_usable(b, usable, "usable size");
      if (usable != b->filled) fail("usable size of %p changed from %zu to %zu", (void *)b->p, b->filled, usable);
    }
    break;
  case OP_IMPOSSIBLE: op_impossible(in); break;
  case OP_TRIM: {
    uint8_t k = take8(in) % (INSTANCE_COUNT + 1);
    if (k == INSTANCE_COUNT)
      instance_trim(&gpa_default_instance);
    else if (S.inst_live[k])
      instance_trim(S.inst[k].instance);
    break;
  }
  case OP_HAND_OVER: op_hand_over(in); break;
  case OP_WORKER_SYNC: worker_sync(); break;
  case OP_WORKER_EXIT: worker_exit(); break;
  case OP_INSTANCE_INIT: {
    uint8_t k = take8(in) % INSTANCE_COUNT;
    gpa_config_t config = GPA_CONFIG_DEFAULT;
    config.thread_safe = take8(in) % 4 != 0; /* one instance in four single-threaded */
    if (S.inst_live[k]) break;
    if (gpa_init(&S.inst[k], &config) != 0) fail("gpa_init failed");
    S.inst_live[k] = true;
    S.inst_shared[k] = config.thread_safe;
    break;
  }
  case OP_INSTANCE_DEINIT: instance_deinit(take8(in) % INSTANCE_COUNT); break;
  case OP_INSTANCE_ALLOC: op_instance_alloc(in); break;
  case OP_INSTANCE_REALLOC: {
    size_t len = take_size(in);
    uint8_t how = take8(in);
    if ((b = take_live_slot(in, 1u << KIND_INSTANCE)) == NULL || (len > b->len && !fits(len - b->len))) break;
    S.live_bytes -= b->len;
    instance_realloc(b, len, how, "instance realloc");
    S.live_bytes += b->len;
    break;
  }
  case OP_INSTANCE_CHECK: instance_check(); break;
  case OP_ARENA_ALLOC: bump_alloc(in, KIND_ARENA); break;
  case OP_ARENA_RESIZE: bump_resize(in, KIND_ARENA); break;
  case OP_ARENA_RESET: arena_reset(in); break;
  case OP_FIXED_ALLOC: bump_alloc(in, KIND_FIXED); break;
  case OP_FIXED_RESIZE: bump_resize(in, KIND_FIXED); break;
  case OP_FIXED_RESET:
    if (S.fixed_live) {
      drop_kind(KIND_FIXED, "fixed buffer reset");
      gpa_fixed_buffer_reset(&S.fixed);
    }
    break;
  default:
    for (size_t i = 0; i < SLOT_COUNT; i++)
      if (S.slots[i].kind != KIND_NONE && !S.slots[i].away)
        block_check(&S.slots[i], "check all");
    break;
  }
}

/* Back to an empty state between inputs: every block freed (and checked),
 * so each instance's deinit must find nothing live. */
static void teardown(void) {
  worker_sync();
  for (size_t i = 0; i < SLOT_COUNT; i++)
    if (S.slots[i].kind == KIND_ARENA || S.slots[i].kind == KIND_FIXED) {
      block_check(&S.slots[i], "teardown");
      S.slots[i] = (block_t){0};
    } else if (S.slots[i].kind != KIND_NONE) {
      block_release(&S.slots[i], "teardown");
    }
  arena_deinit();
  S.fixed_live = false;
  for (uint8_t k = 0; k < INSTANCE_COUNT; k++) instance_deinit(k);
  S.live_bytes = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  input_t in = {data, size};
  S.next_id = 0;
  while (in.left != 0) run_op(&in);
  teardown();
  return 0;
}
