/*
 * gpa.h: the public interface of libgpa, a general-purpose memory allocator.
 *
 * Three ways in:
 *  - Drop-in and linked: preloading libgpa.so, or linking libgpa, replaces
 *    the C library's whole allocation family (malloc, free, calloc, realloc,
 *    reallocarray, aligned_alloc, posix_memalign, memalign, valloc, pvalloc,
 *    malloc_usable_size, malloc_trim, mallinfo2 and friends).  Those keep
 *    their usual declarations in <stdlib.h> and <malloc.h>.
 *  - Explicit: `main` sets up allocator state (gpa_t), hands a small
 *    interface value (gpa_allocator_t) down to the code that allocates, and
 *    tears the state down at the end, learning whether anything leaked.
 *    Code that takes a gpa_allocator_t works the same whether it got the
 *    general-purpose allocator, an arena, a fixed buffer, a failing
 *    allocator or the C library's malloc.
 *
 *      int main(void) {
 *        gpa_t gpa;
 *        gpa_init(&gpa, NULL);
 *        int rc = run(gpa_allocator(&gpa));
 *        if (gpa_deinit(&gpa) == GPA_LEAK) rc = 1;
 *        return rc;
 *      }
 *
 * Sizes and alignments: an alignment is a power of two; 0 means "the
 * natural one", alignof(max_align_t).  A zero-length request is served as a
 * one-byte one, so a successful allocation is never NULL.
 *
 * Thread safety: the process-wide functions and a gpa_t made with the
 * default configuration may be used from any thread at once.  Arenas, fixed
 * buffers, failing allocators and arrays are single-threaded values: guard
 * them yourself when you share them.
 */
#ifndef GPA_H
#define GPA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GPA_VERSION_MAJOR 0
#define GPA_VERSION_MINOR 3
#define GPA_VERSION_PATCH 0

/* The library's version as "MAJOR.MINOR.PATCH"; a static string. */
const char *gpa_version(void);

/*
 * C23 sized deallocation.  `size` must be the size that was requested (any
 * size that maps to the same block is accepted); `alignment` the alignment
 * given to aligned_alloc.  NULL is ignored, like free(NULL).
 */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

/* ======================================================================== *
 * The allocator interface value
 * ======================================================================== */

/*
 * The operations every allocator provides.  `ret_addr` is the return
 * address of the user's call (the helpers below pass it), so reports can
 * start at user code; an implementation may ignore it.
 *
 * alloc:  `len` bytes aligned to `alignment` (a power of two, never 0 here),
 *         or NULL when the memory cannot be had.  `len` may be 0.
 * resize: change the block's length to `new_len` in place; true if done,
 *         false (block unchanged) if it would have to move.
 * remap:  change the block's length, moving it if need be (bytes up to the
 *         smaller length kept); the block's new address, or NULL (block
 *         unchanged) when that is impossible or not worth it.
 * free:   give the block back; `len` and `alignment` are those it was
 *         allocated (or last resized) with.
 */
typedef struct gpa_allocator_vtable {
  void *(*alloc)(void *ctx, size_t len, size_t alignment, void *ret_addr);
  bool (*resize)(void *ctx, void *ptr, size_t old_len, size_t alignment, size_t new_len, void *ret_addr);
  void *(*remap)(void *ctx, void *ptr, size_t old_len, size_t alignment, size_t new_len, void *ret_addr);
  void (*free)(void *ctx, void *ptr, size_t len, size_t alignment, void *ret_addr);
} gpa_allocator_vtable_t;

/* Two words, passed by value: whose state (`ctx`) and which operations.
 * Any struct can provide one by pairing itself with a constant vtable. */
typedef struct gpa_allocator {
  void *ctx;
  const gpa_allocator_vtable_t *vtable;
} gpa_allocator_t;

/* ---- raw calls through an allocator (the helpers below use these) -------
 * Each passes its own caller's address as ret_addr. */

/* `len` bytes aligned to `alignment` (0: natural).  NULL with errno ENOMEM
 * when out of memory, EINVAL when `alignment` is not a power of two. */
void *gpa_raw_alloc(gpa_allocator_t a, size_t len, size_t alignment);
/* `count * size` bytes; NULL when the product overflows or memory runs out. */
void *gpa_raw_alloc_array(gpa_allocator_t a, size_t count, size_t size, size_t alignment);
/* As gpa_raw_alloc_array, the bytes set to zero. */
void *gpa_raw_alloc_zeroed(gpa_allocator_t a, size_t count, size_t size, size_t alignment);
bool gpa_raw_resize(gpa_allocator_t a, void *ptr, size_t old_len, size_t alignment, size_t new_len);
void *gpa_raw_remap(gpa_allocator_t a, void *ptr, size_t old_len, size_t alignment, size_t new_len);
/* NULL is ignored. */
void gpa_raw_free(gpa_allocator_t a, void *ptr, size_t len, size_t alignment);
/* Grow or shrink an array of `old_count` to `new_count` elements: in place
 * when the allocator can, else moved (remap, or alloc + copy + free).  NULL
 * (the old block untouched and still owned by the caller) on failure; a
 * NULL `ptr` allocates, a `new_count` of 0 frees and returns NULL. */
void *gpa_raw_realloc(gpa_allocator_t a, void *ptr, size_t old_count, size_t new_count, size_t size,
                      size_t alignment);
/* A copy of `len` bytes at `src` (alignment 0: natural), or NULL. */
void *gpa_raw_dupe(gpa_allocator_t a, const void *src, size_t len, size_t alignment);
/* A copy of the C string `s`, terminator included, or NULL; free it with
 * gpa_free(a, copy, strlen(copy) + 1). */
char *gpa_strdup(gpa_allocator_t a, const char *s);

/* What the typed helpers expand to.  They call the two allocators programs
 * use most directly: a gpa_t's value through gpa_instance_alloc_ and
 * gpa_instance_free_ (no indirect call), an arena's by bumping it inline
 * (a few instructions at the call site).  Everything else, and every case
 * those do not finish, goes through the raw calls. */
struct gpa;
struct gpa_arena;
extern const gpa_allocator_vtable_t gpa_instance_vtable;
extern const gpa_allocator_vtable_t gpa_arena_vtable;
void *gpa_instance_alloc_(struct gpa *gpa, size_t len, size_t alignment);
void gpa_instance_free_(struct gpa *gpa, void *ptr, size_t len);
static inline void *gpa_arena_bump_(struct gpa_arena *arena, size_t len, size_t alignment);

/* `alignment` is a power of two (an _Alignof). */
static inline void *gpa_alloc_bytes_(gpa_allocator_t a, size_t count, size_t size, size_t alignment) {
  size_t len;
  if (__builtin_mul_overflow(count, size, &len)) return gpa_raw_alloc_array(a, count, size, alignment);
  if (a.vtable == &gpa_instance_vtable) return gpa_instance_alloc_((struct gpa *)a.ctx, len, alignment);
  if (a.vtable == &gpa_arena_vtable && len != 0) {
    void *p = gpa_arena_bump_((struct gpa_arena *)a.ctx, len, alignment);
    if (p != NULL) return p;
  }
  return gpa_raw_alloc_array(a, count, size, alignment);
}

static inline void gpa_free_bytes_(gpa_allocator_t a, void *ptr, size_t len, size_t alignment) {
  if (a.vtable == &gpa_instance_vtable)
    gpa_instance_free_((struct gpa *)a.ctx, ptr, len);
  else
    gpa_raw_free(a, ptr, len, alignment);
}

/* ---- typed helpers -------------------------------------------------------
 * Pair them as Zig's allocator does: what gpa_alloc* gives goes back through
 * gpa_free* with the same count, what gpa_create gives through gpa_destroy.
 * Counts are in elements; the byte size is computed without overflow. */
#define GPA_ALIGNOF_EXPR(expr) __alignof__(expr)

#define gpa_alloc(a, T, n) ((T *)gpa_alloc_bytes_((a), (n), sizeof(T), _Alignof(T)))
#define gpa_alloc_zeroed(a, T, n) ((T *)gpa_raw_alloc_zeroed((a), (n), sizeof(T), _Alignof(T)))
#define gpa_alloc_aligned(a, T, n, align)                                                       \
  ((T *)gpa_raw_alloc_array((a), (n), sizeof(T), (align) > _Alignof(T) ? (align) : _Alignof(T)))
#define gpa_free(a, ptr, n) gpa_free_bytes_((a), (ptr), (n) * sizeof(*(ptr)), GPA_ALIGNOF_EXPR(*(ptr)))
#define gpa_free_aligned(a, ptr, n, align)                                                      \
  gpa_raw_free((a), (ptr), (n) * sizeof(*(ptr)),                                                \
               (align) > GPA_ALIGNOF_EXPR(*(ptr)) ? (align) : GPA_ALIGNOF_EXPR(*(ptr)))
#define gpa_create(a, T) ((T *)gpa_alloc_bytes_((a), 1, sizeof(T), _Alignof(T)))
#define gpa_destroy(a, ptr) gpa_free_bytes_((a), (ptr), sizeof(*(ptr)), GPA_ALIGNOF_EXPR(*(ptr)))
#define gpa_realloc(a, ptr, old_n, new_n)                                                       \
  ((__typeof__(ptr))gpa_raw_realloc((a), (ptr), (old_n), (new_n), sizeof(*(ptr)),               \
                                    GPA_ALIGNOF_EXPR(*(ptr))))
#define gpa_dupe(a, T, src, n)                                                                  \
  ((T *)gpa_raw_dupe((a), (src), (n) * sizeof(T), _Alignof(T)))

/* ======================================================================== *
 * The general-purpose allocator: state and lifetime
 * ======================================================================== */

/*
 * The debug layer's options: one struct decides every debug behaviour.  All
 * zero (the default) is off; any field set puts the instance's blocks
 * behind the debug layer.  Drop-in and linked programs set the same options
 * through the environment: GPA_OPTIONS=leaks=1:frames=16 (README lists
 * them).
 */
typedef struct gpa_debug_config {
  bool leaks;             /* report blocks still live at gpa_deinit (at exit for malloc) */
  bool show_reachable;    /* at exit, list still-reachable blocks in full, not just count them */
  unsigned frames;        /* stack frames recorded per allocation and free, up to 64 (0: none) */
  bool exact_stacks;      /* unwind with the C library's unwinder: whole stacks through code built
                             without frame pointers, at several times the cost */
  bool checks;            /* record every free's stack (double-free and write-after-free reports show
                             it) and hold sized frees to the size asked for; without it frees are
                             cheaper, and double and invalid frees are still caught and reported */
  bool canaries;          /* guard bytes after every block, verified at free, realloc and deinit */
  size_t quarantine;      /* bytes of freed blocks held back before reuse (0: none) */
  bool alloc_fill;        /* fill new blocks with GPA_DEBUG_ALLOC_BYTE */
  bool free_fill;         /* fill freed blocks with GPA_DEBUG_FREE_BYTE; verified when they leave
                             the quarantine, so writes after free are caught */
  size_t memory_limit;    /* live bytes past which allocations fail with ENOMEM (0: no limit) */
  bool verbose;           /* log every allocation and free with its size and caller */
  bool stats;             /* keep peaks and totals, print statistics at gpa_deinit (at exit for malloc) */
  const char *log_path;   /* reports go to this file (appended), NULL: standard error */
  int leak_exitcode;      /* malloc only: exit status when the exit report finds leaks (0: unchanged) */
  bool continue_on_error; /* report misuse and carry on (the block is left alone) instead of aborting */
} gpa_debug_config_t;

/* The patterns the fills write. */
#define GPA_DEBUG_ALLOC_BYTE 0xAA
#define GPA_DEBUG_FREE_BYTE 0xDD

typedef struct gpa_config {
  /* true (the default): any thread may allocate and free through the
   * instance at once, each thread through a heap of its own.  false: one
   * heap, no per-thread lookup; only one thread at a time may use it. */
  bool thread_safe;
  gpa_debug_config_t debug; /* all off by default */
} gpa_config_t;

/* The defaults gpa_init uses for a NULL config. */
#define GPA_CONFIG_DEFAULT ((gpa_config_t){.thread_safe = true})

struct gpa_instance;
struct debug_state;

/*
 * The allocator state.  Place it where you like (stack, static, heap); keep
 * it alive and in place from gpa_init to gpa_deinit, since the allocator
 * values made from it point at it.  Its fields are the library's.
 */
typedef struct gpa {
  uint64_t tag;                  /* live, deinitialised, or never set up */
  struct gpa_instance *instance; /* segments, slabs and per-thread heaps */
  uint64_t id;                   /* the instance's, never reused: finds each thread's heap */
  gpa_config_t config;
  struct debug_state *debug;     /* the debug layer, when config.debug asks for it */
  size_t leaked_blocks;          /* set by gpa_deinit: blocks still live */
  size_t leaked_bytes;           /* and their bytes */
} gpa_t;

typedef enum gpa_status {
  GPA_OK = 0,   /* every allocation was freed */
  GPA_LEAK = 1, /* allocations were still live at deinit (now released) */
} gpa_status_t;

/*
 * Set up `gpa` as an independent allocator: its blocks come from memory no
 * other instance hands out.  `config` NULL means GPA_CONFIG_DEFAULT.
 * Returns 0, ENOMEM when the kernel refuses the first pages, or EINVAL when
 * `gpa` is NULL.  Whatever `gpa` held before is overwritten: initialising a
 * live state again leaks its instance.
 */
int gpa_init(gpa_t *gpa, const gpa_config_t *config);

/*
 * Release everything the instance holds, live blocks included, back to the
 * kernel.  GPA_LEAK when allocations were still live (gpa->leaked_blocks and
 * gpa->leaked_bytes then say how many), GPA_OK otherwise.  No thread may use
 * the instance during or after the call; using an allocator made from it
 * afterwards is caught and aborts with a report.  Never prints anything
 * unless debug options ask for it.
 */
gpa_status_t gpa_deinit(gpa_t *gpa);

/* The allocator value for `gpa` (which must be live). */
gpa_allocator_t gpa_allocator(gpa_t *gpa);

/* The process instance behind malloc, as a state.  It lives as long as the
 * process: gpa_deinit on it does nothing and returns GPA_OK. */
gpa_t *gpa_default(void);

/* Live allocations in `gpa`, and the bytes of their blocks (each at least
 * what was asked for).  Exact when no other thread is using the instance; a
 * snapshot otherwise. */
size_t gpa_live_count(gpa_t *gpa);
size_t gpa_live_bytes(gpa_t *gpa);

/* Whether `ptr` is a live block handed out by `gpa` (any interior pointer
 * answers false). */
bool gpa_owns(gpa_t *gpa, const void *ptr);

/* Write `gpa`'s statistics (NULL: malloc's) as a table to the debug log
 * (standard error unless log_path says otherwise): current and peak bytes
 * and blocks, totals, and counts per size class (peaks and totals only
 * when debug.stats or a memory limit keeps them).  Instances without the
 * debug layer print what the core keeps (mapped and live bytes). */
void gpa_stats_print(gpa_t *gpa);

/* ======================================================================== *
 * Arena: bump allocation over any backing allocator
 * ======================================================================== */

/*
 * Allocations are carved from chunks taken from the backing allocator, each
 * bigger than the last; individual frees are no-ops except for the most
 * recent allocation (the one ending where the next would start), whose
 * memory is reclaimed (and which can also grow or shrink in place); blocks
 * freed in the reverse order of their allocation all come back.  Everything
 * goes at once at reset or deinit.  Prefer an arena for many small objects
 * that die together: a parse tree, a request, a frame.  Single-threaded.
 */
typedef struct gpa_arena_chunk gpa_arena_chunk_t;
typedef struct gpa_arena {
  gpa_allocator_t backing;
  gpa_arena_chunk_t *chunks; /* newest first */
  uintptr_t cursor;          /* next free byte in the newest chunk */
  uintptr_t end;             /* end of the newest chunk */
} gpa_arena_t;

typedef enum gpa_arena_reset_mode {
  GPA_ARENA_FREE_ALL,         /* give every chunk back */
  GPA_ARENA_RETAIN_CAPACITY,  /* keep one chunk as big as all of them were */
  GPA_ARENA_RETAIN_WITH_LIMIT /* as RETAIN_CAPACITY, at most `limit` bytes */
} gpa_arena_reset_mode_t;

/* The bump in the newest chunk (cursor == end == 0 when there is none);
 * NULL when the block does not fit there.  For the typed helpers. */
static inline void *gpa_arena_bump_(struct gpa_arena *arena, size_t len, size_t alignment) {
  uintptr_t start = (arena->cursor + (alignment - 1)) & ~(uintptr_t)(alignment - 1);
  if (start < arena->cursor || start > arena->end || arena->end - start < len) return NULL;
  arena->cursor = start + len;
  return (void *)start;
}

/* An empty arena whose chunks will come from `backing` (which must outlive
 * it); takes no memory until the first allocation. */
void gpa_arena_init(gpa_arena_t *arena, gpa_allocator_t backing);
/* Free every chunk; the arena may be initialised again afterwards. */
void gpa_arena_deinit(gpa_arena_t *arena);
/* The arena's allocator value; valid until gpa_arena_deinit.  A failed
 * allocation (backing out of memory) is NULL. */
gpa_allocator_t gpa_arena_allocator(gpa_arena_t *arena);
/* Forget every allocation.  With a RETAIN mode the capacity is kept in one
 * chunk (false when taking that chunk failed: the arena is then reset with
 * whatever chunk it could keep, still usable). */
bool gpa_arena_reset(gpa_arena_t *arena, gpa_arena_reset_mode_t mode, size_t limit);
/* Bytes of chunk memory the arena holds. */
size_t gpa_arena_capacity(const gpa_arena_t *arena);

/* ======================================================================== *
 * Fixed buffer: bump allocation in caller memory
 * ======================================================================== */

/* Never calls another allocator and never aborts: NULL when the buffer is
 * full.  The most recent allocation can be freed (reclaimed) and resized in
 * place.  Single-threaded. */
typedef struct gpa_fixed_buffer {
  uint8_t *buffer;
  size_t size;
  size_t end_index; /* bytes in use */
  size_t last;      /* offset of the most recent allocation (SIZE_MAX: none) */
} gpa_fixed_buffer_t;

/* Allocate from the caller's `size` bytes at `buffer`, which stay the
 * caller's: nothing is freed at the end. */
void gpa_fixed_buffer_init(gpa_fixed_buffer_t *fb, void *buffer, size_t size);
/* The buffer's allocator value; valid while `fb` and the buffer live. */
gpa_allocator_t gpa_fixed_buffer_allocator(gpa_fixed_buffer_t *fb);
/* Whether `ptr` lies inside the buffer's allocated part. */
bool gpa_fixed_buffer_owns(const gpa_fixed_buffer_t *fb, const void *ptr);
/* Forget every allocation: the whole buffer is free again. */
void gpa_fixed_buffer_reset(gpa_fixed_buffer_t *fb);

/* ======================================================================== *
 * Failing allocator: for testing out-of-memory paths
 * ======================================================================== */

/* Passes calls through to `backing` and counts them; the allocation whose
 * index (from 0) is `fail_index` fails, as does every later one, and the
 * resize whose index is `resize_fail_index` (SIZE_MAX: never) fails.
 * Single-threaded. */
typedef struct gpa_failing {
  gpa_allocator_t backing;
  size_t fail_index;
  size_t resize_fail_index;
  size_t alloc_index;      /* allocations attempted */
  size_t resize_index;     /* resizes attempted */
  size_t allocations;      /* allocations that succeeded */
  size_t deallocations;
  size_t allocated_bytes;
  size_t freed_bytes;
  bool has_induced_failure;
} gpa_failing_t;

/* Counters at zero; `backing` must outlive `f`. */
void gpa_failing_init(gpa_failing_t *f, gpa_allocator_t backing, size_t fail_index, size_t resize_fail_index);
/* The failing allocator's value; failed calls return NULL / false. */
gpa_allocator_t gpa_failing_allocator(gpa_failing_t *f);

/* ======================================================================== *
 * The C library's malloc behind the interface
 * ======================================================================== */

/* The process's malloc, free and realloc (libgpa's own, since a program
 * that links or preloads libgpa gets them as its malloc).  Thread-safe, no
 * state. */
gpa_allocator_t gpa_libc_allocator(void);

/* ======================================================================== *
 * Testing allocator
 * ======================================================================== */

/* A gpa_t for a unit test: gpa_testing_init sets one up (thread-safe
 * defaults); gpa_testing_check tears it down, prints one line per problem
 * to stderr ("gpa: <test_name>: leaked 3 allocation(s), 96 byte(s)") and returns
 * false when anything leaked.  <gpa_testing.h> wraps the two as cmocka
 * fixtures that fail the test. */
int gpa_testing_init(gpa_t *gpa);
bool gpa_testing_check(gpa_t *gpa, const char *test_name);

/* ======================================================================== *
 * Growable array
 * ======================================================================== */

/* A contiguous, growable array of elements of one size, allocated through
 * the allocator it was given.  `items` moves when the array grows.
 * Single-threaded. */
typedef struct gpa_array {
  void *items;
  size_t len;      /* elements in use */
  size_t capacity; /* elements allocated */
  size_t elem_size;
  size_t elem_align;
  gpa_allocator_t allocator;
} gpa_array_t;

/* An empty array of `elem_size`-byte elements aligned to `elem_align` (a
 * power of two); allocates nothing yet.  `a` must outlive the array. */
void gpa_array_init(gpa_array_t *arr, gpa_allocator_t a, size_t elem_size, size_t elem_align);
#define gpa_array_init_typed(arr, a, T) gpa_array_init((arr), (a), sizeof(T), _Alignof(T))
/* Free the elements; the array is empty (and reusable) afterwards. */
void gpa_array_deinit(gpa_array_t *arr);
/* Room for at least `capacity` elements; 0 or ENOMEM (array unchanged). */
int gpa_array_reserve(gpa_array_t *arr, size_t capacity);
/* Append a copy of one element / of `n` elements; 0 or ENOMEM (array
 * unchanged). */
int gpa_array_append(gpa_array_t *arr, const void *elem);
int gpa_array_append_many(gpa_array_t *arr, const void *elems, size_t n);
#define gpa_array_items(arr, T) ((T *)(arr)->items)

#ifdef __cplusplus
}
#endif

#endif /* GPA_H */
