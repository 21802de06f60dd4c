/*
 * api_gpa.c: the general-purpose allocator of gpa.h: gpa_init and gpa_deinit
 * around an explicit instance, the allocator value and its four operations,
 * and the testing allocator.  Every call through the value first checks the
 * state it names: one never set up, one deinitialised, or one left behind
 * in a stack frame that has returned is reported before any block is
 * touched, and a block is checked to belong to the instance it is given
 * back to.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <pthread.h>
#include <string.h>

#include "api.h"
#include "debug.h"
#include "writer.h"
#include "os.h"
#include "stats.h"

GPA_EXPORT const char *gpa_version(void) { return "0.3.0"; }

/* The process instance, as seen through the explicit API. */
static gpa_t default_state = {
  .tag = GPA_STATE_LIVE,
  .instance = &gpa_default_instance,
  .id = 1, /* gpa_default_instance.id */
  .config = {.thread_safe = true},
};

/* ---- the state ---------------------------------------------------------- */

__thread uintptr_t api_tls_stack_low __attribute__((tls_model("initial-exec")));

uintptr_t api_stack_low_slow(void) {
  uintptr_t low = UINTPTR_MAX; /* unknown: never call a state dead */
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void *addr;
    size_t size;
    if (pthread_attr_getstack(&attr, &addr, &size) == 0) low = (uintptr_t)addr;
    pthread_attr_destroy(&attr);
  }
  api_tls_stack_low = low;
  return low;
}

void api_report_state(const gpa_t *g, uintptr_t frame) {
  if (g == NULL) report_allocator_state(g, "with a NULL state");
  if (api_state_in_returned_frame(g, frame))
    report_allocator_state(g, "after its state went out of scope (a stack frame that has returned; "
                              "was gpa_allocator() of a local gpa_t returned?)");
  if (g->tag == GPA_STATE_DEAD) report_allocator_state(g, "after gpa_deinit");
  report_allocator_state(g, "before gpa_init, or its state was overwritten");
}

/* The vtable's operations check the state against their caller's stack
 * pointer: the user's when called straight through the vtable, the raw
 * helper's (a little deeper, so a little weaker) otherwise. */
#define OWN_FRAME() ((uintptr_t)__builtin_dwarf_cfa())

static gpa_instance_t *state_instance(const gpa_t *g, uintptr_t frame) {
  if (!api_state_usable(g, frame)) api_report_state(g, frame);
  return g->instance;
}

static const void *instance_state(const gpa_instance_t *inst) {
  return inst->state != NULL ? inst->state : (const void *)&default_state;
}

/* ---- blocks ------------------------------------------------------------- */

/* The calling thread's heap in `inst` if it has one (for the classifier's
 * test of a freed block: only a block's owner walks its lists). */
static gpa_heap_t *inst_heap_if_any(gpa_instance_t *inst) {
  return inst == &gpa_default_instance ? gpa_tls_heap : instance_thread_heap_if_any(inst);
}

/* Check that `p` is a live block of `inst` that holds `len` bytes, and
 * classify it.  Reports and aborts when it is not. */
static block_kind_t block_checked(const gpa_t *g, gpa_instance_t *inst, void *p, size_t len, const char *op,
                                  block_ref_t *ref) {
  block_kind_t kind = block_classify_live(op, p, inst_heap_if_any(inst), ref);
  if (GPA_UNLIKELY(ref->instance != inst)) report_wrong_instance(op, p, instance_state(ref->instance), g);
  if (GPA_UNLIKELY(len > ref->usable)) report_bad_size(op, p, len, ref->usable);
  return kind;
}

/* The calling thread's heap for allocating in `inst`, set up if need be;
 * NULL (ENOMEM) when none can be had. */
static gpa_heap_t *alloc_heap(gpa_instance_t *inst, size_t alignment) {
  if (inst == &gpa_default_instance) return alignment <= GPA_MIN_ALIGN ? gpa_tls_heap : heap_current();
  return instance_thread_heap(inst);
}

/* ---- the four operations ------------------------------------------------ */

void *api_gpa_alloc_slow(gpa_t *g, size_t len, size_t alignment, uintptr_t frame) {
  gpa_instance_t *inst = state_instance(g, frame);
  gpa_heap_t *h = alloc_heap(inst, alignment);
  if (GPA_UNLIKELY(h == NULL)) return NULL; /* errno set */
  /* The process instance's heap takes this thread's slot too, so later
   * calls through gpa_default() take the fast path. */
  if (inst == &gpa_default_instance && h != &gpa_empty_heap) instance_slot_set_default(h);
  if (alignment <= GPA_MIN_ALIGN) return heap_malloc(h, len);
  return heap_malloc_aligned(h, alignment, len);
}

void api_gpa_free_slow(gpa_t *g, void *p, size_t len, uintptr_t frame) {
  gpa_instance_t *inst = state_instance(g, frame);
  if (p == NULL) return;
  block_ref_t ref;
  block_checked(g, inst, p, len, "free", &ref);
  heap_free(inst_heap_if_any(inst), p);
}

static void *gpa_op_alloc(void *ctx, size_t len, size_t alignment, void *ret_addr) {
  (void)ret_addr;
  return api_gpa_alloc(ctx, len, alignment, OWN_FRAME());
}

static void gpa_op_free(void *ctx, void *ptr, size_t len, size_t alignment, void *ret_addr) {
  (void)alignment;
  (void)ret_addr;
  api_gpa_free(ctx, ptr, len, OWN_FRAME());
}

static bool gpa_op_resize(void *ctx, void *ptr, size_t old_len, size_t alignment, size_t new_len, void *ret_addr) {
  (void)alignment;
  (void)ret_addr;
  gpa_instance_t *inst = state_instance(ctx, OWN_FRAME());
  block_ref_t ref;
  if (block_checked(ctx, inst, ptr, old_len, "resize", &ref) == BLOCK_LARGE) return large_resize_in_place(ref.seg, new_len);
  return new_len <= ref.usable;
}

static void *gpa_op_remap(void *ctx, void *ptr, size_t old_len, size_t alignment, size_t new_len, void *ret_addr) {
  if (gpa_op_resize(ctx, ptr, old_len, alignment, new_len, ret_addr)) return ptr;
  /* A large block moves its pages (alignment kept: the move keeps the
   * offset within a segment-aligned mapping); anything else would be a
   * copy, which the caller does better knowing how much is in use. */
  gpa_segment_t *seg = segment_of(ptr);
  if (segmap_contains(seg) && seg->kind == GPA_SEGMENT_LARGE && size_takes_mapping(seg->instance, new_len))
    return large_realloc(seg, new_len);
  return NULL;
}

GPA_EXPORT const gpa_allocator_vtable_t gpa_instance_vtable = {
  .alloc = gpa_op_alloc,
  .resize = gpa_op_resize,
  .remap = gpa_op_remap,
  .free = gpa_op_free,
};

/* ---- the same operations through the debug layer --------------------------
 * An instance whose config asks for debugging hands out this vtable: the
 * typed helpers' direct calls (gpa_instance_alloc_) never see its blocks. */

static debug_t *state_debug(const gpa_t *g, uintptr_t frame) {
  state_instance(g, frame);
  return g->debug;
}

static void *debug_op_alloc(void *ctx, size_t len, size_t alignment, void *ret_addr) {
  return debug_alloc(state_debug(ctx, OWN_FRAME()), len, alignment, false, (uintptr_t)ret_addr, "gpa_alloc");
}

static bool debug_op_resize(void *ctx, void *ptr, size_t old_len, size_t alignment, size_t new_len,
                            void *ret_addr) {
  (void)alignment;
  return debug_resize(state_debug(ctx, OWN_FRAME()), ptr, old_len, new_len, (uintptr_t)ret_addr, "gpa_resize");
}

static void *debug_op_remap(void *ctx, void *ptr, size_t old_len, size_t alignment, size_t new_len,
                            void *ret_addr) {
  /* In place or not at all: the caller's copy then moves the block, and a
   * stale pointer to the old one shows up in the quarantine. */
  return debug_op_resize(ctx, ptr, old_len, alignment, new_len, ret_addr) ? ptr : NULL;
}

static void debug_op_free(void *ctx, void *ptr, size_t len, size_t alignment, void *ret_addr) {
  (void)alignment;
  debug_free(state_debug(ctx, OWN_FRAME()), ptr, true, len, (uintptr_t)ret_addr, "gpa_free");
}

static const gpa_allocator_vtable_t gpa_debug_vtable = {
  .alloc = debug_op_alloc,
  .resize = debug_op_resize,
  .remap = debug_op_remap,
  .free = debug_op_free,
};

static bool debug_config_enabled(const gpa_debug_config_t *c) {
  return c->leaks || c->show_reachable || c->frames != 0 || c->checks || c->canaries || c->quarantine != 0 ||
         c->alloc_fill || c->free_fill || c->memory_limit != 0 || c->verbose || c->stats || c->log_path != NULL;
}

/* ---- lifetime ------------------------------------------------------------ */

GPA_EXPORT int gpa_init(gpa_t *gpa, const gpa_config_t *config) {
  if (gpa == NULL) return EINVAL;
  gpa_config_t cfg = config != NULL ? *config : GPA_CONFIG_DEFAULT;
  gpa_instance_t *inst = instance_create(cfg.thread_safe);
  if (inst == NULL) return ENOMEM;
  debug_t *debug = NULL;
  if (debug_config_enabled(&cfg.debug)) {
    debug = debug_create(inst, &cfg.debug, gpa);
    int fd = debug != NULL && cfg.debug.log_path != NULL
                 ? open(cfg.debug.log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)
                 : 2;
    if (debug == NULL || fd < 0) {
      int err = debug == NULL ? ENOMEM : errno;
      size_t blocks, bytes;
      if (debug != NULL) debug_destroy(debug, &blocks, &bytes);
      instance_destroy(inst, &blocks, &bytes);
      return err;
    }
    if (fd != 2) debug_set_log(debug, fd);
  }
  memset(gpa, 0, sizeof *gpa);
  gpa->instance = inst;
  gpa->id = inst->id;
  gpa->config = cfg;
  gpa->debug = debug;
  inst->state = gpa;
  gpa->tag = GPA_STATE_LIVE;
  return 0;
}

GPA_EXPORT gpa_status_t gpa_deinit(gpa_t *gpa) {
  gpa_instance_t *inst = state_instance(gpa, OWN_FRAME());
  if (inst == &gpa_default_instance) return GPA_OK; /* lives as long as the process */
  size_t blocks, bytes;
  if (gpa->debug != NULL) {
    /* The program's count: quarantined blocks are freed, whatever the core
     * still holds. */
    debug_destroy(gpa->debug, &blocks, &bytes);
    gpa->debug = NULL;
    size_t core_blocks, core_bytes;
    instance_destroy(inst, &core_blocks, &core_bytes);
  } else {
    instance_destroy(inst, &blocks, &bytes);
  }
  gpa->tag = GPA_STATE_DEAD;
  gpa->id = GPA_STATE_DEAD_ID;
  gpa->instance = NULL;
  gpa->leaked_blocks = blocks;
  gpa->leaked_bytes = bytes;
  return blocks != 0 ? GPA_LEAK : GPA_OK;
}

GPA_EXPORT gpa_allocator_t gpa_allocator(gpa_t *gpa) {
  state_instance(gpa, OWN_FRAME());
  return (gpa_allocator_t){.ctx = gpa, .vtable = gpa->debug != NULL ? &gpa_debug_vtable : &gpa_instance_vtable};
}

GPA_EXPORT gpa_t *gpa_default(void) { return &default_state; }

/* The program's view through the debug layer when there is one (its
 * quarantined blocks are freed), else the core's. */
static void count_live(gpa_t *gpa, gpa_instance_t *inst, size_t *blocks, size_t *bytes) {
  if (gpa->debug != NULL) debug_count_live(gpa->debug, blocks, bytes);
  else instance_count_live(inst, blocks, bytes);
}

GPA_EXPORT size_t gpa_live_count(gpa_t *gpa) {
  size_t blocks, bytes;
  count_live(gpa, state_instance(gpa, OWN_FRAME()), &blocks, &bytes);
  return blocks;
}

GPA_EXPORT size_t gpa_live_bytes(gpa_t *gpa) {
  size_t blocks, bytes;
  count_live(gpa, state_instance(gpa, OWN_FRAME()), &blocks, &bytes);
  return bytes;
}

GPA_EXPORT void gpa_stats_print(gpa_t *gpa) {
  debug_t *d = NULL;
  gpa_instance_t *inst = &gpa_default_instance;
  if (gpa == NULL) {
    if (debug_malloc_active()) d = gpa_debug_malloc;
  } else {
    inst = state_instance(gpa, OWN_FRAME());
    d = gpa->debug;
  }
  if (d != NULL) {
    debug_print_stats(d);
    return;
  }
  size_t blocks, bytes;
  instance_count_live(inst, &blocks, &bytes);
  gpa_stats_t st;
  stats_collect(inst, &st);
  writer_t w;
  writer_init(&w, 2);
  writer_str(&w, "gpa: statistics (no debug layer: what the core keeps)\n  live:   ");
  writer_dec(&w, bytes);
  writer_str(&w, " byte(s) of blocks in ");
  writer_dec(&w, blocks);
  writer_str(&w, " block(s)\n  mapped: ");
  writer_dec(&w, st.small_mapped + st.large_mapped);
  writer_str(&w, " byte(s) (");
  writer_dec(&w, st.small_mapped);
  writer_str(&w, " in small segments, ");
  writer_dec(&w, st.large_mapped);
  writer_str(&w, " for large blocks)\n");
  writer_flush(&w);
}

GPA_EXPORT bool gpa_owns(gpa_t *gpa, const void *ptr) {
  gpa_instance_t *inst = state_instance(gpa, OWN_FRAME());
  if (gpa->debug != NULL) return debug_owns(gpa->debug, ptr);
  block_ref_t ref;
  block_kind_t kind = block_classify(ptr, inst_heap_if_any(inst), &ref);
  return (kind == BLOCK_SMALL || kind == BLOCK_LARGE || kind == BLOCK_OVERALIGNED) && ref.instance == inst;
}

/* ---- testing allocator -------------------------------------------------- */

GPA_EXPORT int gpa_testing_init(gpa_t *gpa) { return gpa_init(gpa, NULL); }

GPA_EXPORT bool gpa_testing_check(gpa_t *gpa, const char *test_name) {
  if (gpa_deinit(gpa) == GPA_OK) return true;
  report_leak_summary(test_name, gpa->leaked_blocks, gpa->leaked_bytes);
  return false;
}
