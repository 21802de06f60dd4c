/*
 * instance.c: an allocator instance: the state that owns heaps, caches of
 * free segments and large mappings.  The process default instance serves
 * malloc; explicit instances (gpa_init) are made and destroyed here, with
 * the registry of live ones and each thread's heap in each.  Also
 * process-wide set-up: the thread-exit hooks and fork safety.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "internal.h"
#include "os.h"

gpa_instance_t gpa_default_instance = {
  .lock = PTHREAD_MUTEX_INITIALIZER,
  .id = 1,
  .thread_safe = true,
};

/* Heaps are carved from chunks of this size, the first cache line of each
 * linking the chunks.  They are unmapped only with their instance: a remote
 * free may still write to a heap whose thread has gone. */
#define HEAP_CHUNK_SIZE ((size_t)64 * 1024)
#define HEAP_CHUNK_HEADER 64

/* Live explicit instances, so a thread exiting after an instance's deinit
 * can tell its heap there is gone; ids are never reused. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static gpa_instance_t *registry_first;
static uint64_t registry_next_id = 2; /* 1 is the default instance */

void instance_lock(gpa_instance_t *inst) { pthread_mutex_lock(&inst->lock); }
void instance_unlock(gpa_instance_t *inst) { pthread_mutex_unlock(&inst->lock); }

gpa_heap_t *instance_heap_acquire(gpa_instance_t *inst) {
  instance_lock(inst);
  gpa_heap_t *h = inst->heap_pool;
  if (h != NULL) {
    inst->heap_pool = h->next_in_pool;
    h->next_in_pool = NULL;
    instance_unlock(inst);
    return h;
  }
  size_t heap_size = (sizeof(gpa_heap_t) + 63) & ~(size_t)63;
  if (inst->heap_chunk_left < heap_size) {
    uint8_t *chunk = os_reserve_aligned(HEAP_CHUNK_SIZE, os_page_size());
    if (chunk == NULL) {
      instance_unlock(inst);
      return NULL;
    }
    *(uint8_t **)chunk = inst->heap_chunks;
    inst->heap_chunks = chunk;
    inst->heap_chunk = chunk + HEAP_CHUNK_HEADER;
    inst->heap_chunk_left = HEAP_CHUNK_SIZE - HEAP_CHUNK_HEADER;
  }
  h = (gpa_heap_t *)inst->heap_chunk;
  inst->heap_chunk += heap_size;
  inst->heap_chunk_left -= heap_size;
  heap_init(h, inst);
  h->next_all = inst->all_heaps;
  inst->all_heaps = h;
  instance_unlock(inst);
  return h;
}

void instance_heap_release(gpa_instance_t *inst, gpa_heap_t *h) {
  instance_lock(inst);
  h->next_in_pool = inst->heap_pool;
  inst->heap_pool = h;
  instance_unlock(inst);
}

/* Release everything that can be released now: the calling thread's empty
 * slabs, those of heaps no thread owns, cached segments and large mappings.
 * Returns true if memory went back to the kernel. */
bool instance_trim(gpa_instance_t *inst) {
  size_t mapped_before = os_mapped_bytes();
  size_t purged_before = os_purged_bytes();
  gpa_heap_t *own = gpa_tls_heap;
  if (own != &gpa_empty_heap && own->instance == inst) heap_collect(own, HEAP_COLLECT_TRIM);

  /* Take the unowned heaps out of the pool while collecting them, so no new
   * thread adopts one meanwhile. */
  instance_lock(inst);
  gpa_heap_t *pool = inst->heap_pool;
  inst->heap_pool = NULL;
  instance_unlock(inst);
  gpa_heap_t *last = NULL;
  for (gpa_heap_t *h = pool; h != NULL; h = h->next_in_pool) {
    heap_collect(h, HEAP_COLLECT_TRIM);
    last = h;
  }

  instance_lock(inst);
  if (last != NULL) {
    last->next_in_pool = inst->heap_pool;
    inst->heap_pool = pool;
  }
  gpa_segment_t *cached = inst->segment_cache;
  inst->segment_cache = NULL;
  inst->segment_cache_count = 0;
  instance_unlock(inst);
  for (gpa_segment_t *seg = cached, *next; seg != NULL; seg = next) {
    next = seg->next;
    segmap_remove(seg);
    atomic_fetch_sub_explicit(&inst->small_mapped, GPA_SEGMENT_SIZE, memory_order_relaxed);
    os_release(seg, GPA_SEGMENT_SIZE);
  }
  large_cache_flush(inst);
  return os_mapped_bytes() < mapped_before || os_purged_bytes() > purged_before;
}

/* ---- explicit instances ------------------------------------------------ */

__thread gpa_thread_heap_slot_t gpa_tls_instance_heaps[GPA_THREAD_INSTANCE_SLOTS]
    __attribute__((tls_model("initial-exec")));
static __thread bool thread_slots_armed __attribute__((tls_model("initial-exec")));
static pthread_key_t instance_heaps_key;

static size_t instance_mapping_size(void) {
  size_t page = os_page_size();
  return (sizeof(gpa_instance_t) + page - 1) & ~(page - 1);
}

gpa_instance_t *instance_create(bool thread_safe) {
  instance_ensure_process_init();
  return instance_create_early(thread_safe);
}

gpa_instance_t *instance_create_early(bool thread_safe) {
  gpa_instance_t *inst = os_reserve_aligned(instance_mapping_size(), os_page_size());
  if (inst == NULL) return NULL;
  pthread_mutex_init(&inst->lock, NULL);
  inst->thread_safe = thread_safe;
  if (!thread_safe && (inst->single_heap = instance_heap_acquire(inst)) == NULL) {
    pthread_mutex_destroy(&inst->lock);
    os_release(inst, instance_mapping_size());
    errno = ENOMEM;
    return NULL;
  }
  pthread_mutex_lock(&registry_lock);
  inst->id = registry_next_id++;
  inst->next_live = registry_first;
  registry_first = inst;
  pthread_mutex_unlock(&registry_lock);
  return inst;
}

/* The live instance with this id; call with registry_lock held. */
static gpa_instance_t *registry_find(uint64_t id) {
  for (gpa_instance_t *inst = registry_first; inst != NULL; inst = inst->next_live)
    if (inst->id == id) return inst;
  return NULL;
}

/* ---- hooks of the layers above ------------------------------------------
 * Small tables of callbacks (fork, heap exits).  A slot is claimed, filled,
 * and only then counted, in the order claimed, so a reader never calls one
 * half set; registering takes no lock (it may happen inside malloc). */

typedef struct hook_count {
  _Atomic(size_t) claimed, published;
} hook_count_t;

static bool hook_claim(hook_count_t *c, size_t max, size_t *slot) {
  size_t i = atomic_fetch_add(&c->claimed, 1);
  if (i >= max) return false;
  *slot = i;
  return true;
}

static void hook_publish(hook_count_t *c, size_t slot) {
  while (atomic_load_explicit(&c->published, memory_order_acquire) != slot) sched_yield();
  atomic_store_explicit(&c->published, slot + 1, memory_order_release);
}

static size_t hooks_set(hook_count_t *c) { return atomic_load_explicit(&c->published, memory_order_acquire); }

/* Callbacks around a heap's release (instance_add_heap_exit_hook). */
#define GPA_HEAP_EXIT_HOOKS 4
static struct {
  void (*before)(void), (*after)(void);
} heap_exit_hooks[GPA_HEAP_EXIT_HOOKS];
static hook_count_t heap_exit_hook_count;

bool instance_add_heap_exit_hook(void (*before)(void), void (*after)(void)) {
  size_t i;
  if (!hook_claim(&heap_exit_hook_count, GPA_HEAP_EXIT_HOOKS, &i)) return false;
  heap_exit_hooks[i].before = before;
  heap_exit_hooks[i].after = after;
  hook_publish(&heap_exit_hook_count, i);
  return true;
}

static size_t heap_exit_hooks_set(void) { return hooks_set(&heap_exit_hook_count); }

/* Before any lock is taken for the release: a hook may wait. */
static void heap_exit_begin(void) {
  for (size_t i = 0; i < heap_exit_hooks_set(); i++) heap_exit_hooks[i].before();
}

static void heap_exit_end(void) {
  for (size_t i = heap_exit_hooks_set(); i-- > 0;) heap_exit_hooks[i].after();
}

/* Give a slot's heap back to its instance's pool if the instance is still
 * live (its deinit may have released it already), and empty the slot.  The
 * registry lock keeps deinit from releasing the heap meanwhile. */
static void thread_slot_release(gpa_thread_heap_slot_t *slot) {
  heap_exit_begin();
  pthread_mutex_lock(&registry_lock);
  gpa_instance_t *inst = registry_find(slot->id);
  if (inst != NULL && inst->thread_safe) heap_thread_exit(slot->heap); /* a single heap stays */
  pthread_mutex_unlock(&registry_lock);
  heap_exit_end();
  slot->id = 0;
  slot->heap = NULL;
}

static void on_thread_exit_instances(void *value) {
  gpa_thread_heap_slot_t *slots = value;
  for (size_t i = 0; i < GPA_THREAD_INSTANCE_SLOTS; i++)
    if (slots[i].id != 0) thread_slot_release(&slots[i]);
}

/* The thread has no heap in `inst` in its slot: take one from the instance
 * (a single-thread instance's only heap), first giving back whichever heap
 * of another instance held the slot (its blocks stay valid; this thread's
 * later frees of them go the remote way). */
gpa_heap_t *instance_thread_heap_slow(gpa_instance_t *inst) {
  gpa_thread_heap_slot_t *slot = &gpa_tls_instance_heaps[inst->id % GPA_THREAD_INSTANCE_SLOTS];
  if (slot->id != 0) thread_slot_release(slot);
  gpa_heap_t *h = inst->thread_safe ? instance_heap_acquire(inst) : inst->single_heap;
  if (h == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  slot->heap = h;
  slot->id = inst->id;
  if (!thread_slots_armed) {
    thread_slots_armed = true;
    pthread_setspecific(instance_heaps_key, gpa_tls_instance_heaps);
  }
  return h;
}

/* The process instance's heap for this thread, put in its slot for the
 * explicit API's fast path (heap_thread_exit empties the slot again). */
void instance_slot_set_default(gpa_heap_t *h) {
  gpa_thread_heap_slot_t *slot = &gpa_tls_instance_heaps[gpa_default_instance.id % GPA_THREAD_INSTANCE_SLOTS];
  if (slot->id == gpa_default_instance.id && slot->heap == h) return;
  if (slot->id != 0 && slot->id != gpa_default_instance.id) thread_slot_release(slot);
  slot->heap = h;
  slot->id = gpa_default_instance.id;
}

/* The thread is giving up its heap in the process instance. */
void instance_slot_clear_default(void) {
  gpa_thread_heap_slot_t *slot = &gpa_tls_instance_heaps[gpa_default_instance.id % GPA_THREAD_INSTANCE_SLOTS];
  if (slot->id == gpa_default_instance.id) {
    slot->id = 0;
    slot->heap = NULL;
  }
}

/* Live blocks and their bytes, small and large.  Exact when no thread is
 * allocating or freeing in the instance meanwhile. */
void instance_count_live(gpa_instance_t *inst, size_t *blocks, size_t *bytes) {
  size_t count = 0, total = 0;
  instance_lock(inst);
  for (gpa_heap_t *h = inst->all_heaps; h != NULL; h = h->next_all) heap_count_live(h, &count, &total);
  instance_unlock(inst);
  count += atomic_load_explicit(&inst->large_count, memory_order_relaxed);
  total += atomic_load_explicit(&inst->large_in_use, memory_order_relaxed);
  *blocks = count;
  *bytes = total;
}

void instance_for_each_block(gpa_instance_t *inst, gpa_block_visit_fn visit, void *ctx) {
  instance_lock(inst);
  for (gpa_heap_t *h = inst->all_heaps; h != NULL; h = h->next_all) heap_for_each_block(h, visit, ctx);
  large_for_each_block(inst, visit, ctx);
  instance_unlock(inst);
}

/* Deinit: count what is still live, then give every byte the instance holds
 * back to the kernel.  No thread may use the instance meanwhile. */
void instance_destroy(gpa_instance_t *inst, size_t *live_blocks, size_t *live_bytes) {
  pthread_mutex_lock(&registry_lock);
  gpa_instance_t **link = &registry_first;
  while (*link != inst) link = &(*link)->next_live;
  *link = inst->next_live;
  pthread_mutex_unlock(&registry_lock);

  instance_count_live(inst, live_blocks, live_bytes);
  for (gpa_heap_t *h = inst->all_heaps; h != NULL; h = h->next_all) {
    for (int full = 0; full < 2; full++) {
      for (gpa_segment_t *seg = (full ? h->full_segments : h->segments).first, *next; seg != NULL; seg = next) {
        next = seg->next;
        segmap_remove(seg);
        os_release(seg, GPA_SEGMENT_SIZE);
      }
    }
  }
  for (gpa_segment_t *seg = inst->segment_cache, *next; seg != NULL; seg = next) {
    next = seg->next;
    segmap_remove(seg);
    os_release(seg, GPA_SEGMENT_SIZE);
  }
  large_release_all(inst);
  for (uint8_t *chunk = inst->heap_chunks, *next; chunk != NULL; chunk = next) {
    next = *(uint8_t **)chunk;
    os_release(chunk, HEAP_CHUNK_SIZE);
  }
  gpa_thread_heap_slot_t *slot = &gpa_tls_instance_heaps[inst->id % GPA_THREAD_INSTANCE_SLOTS];
  if (slot->id == inst->id) {
    slot->id = 0;
    slot->heap = NULL;
  }
  pthread_mutex_destroy(&inst->lock);
  os_release(inst, instance_mapping_size());
}

/* ---- process set-up ---------------------------------------------------- */

static pthread_key_t thread_exit_key;
static _Atomic(int) process_init_state; /* 0 not started, 1 running, 2 done */

static void on_thread_exit(void *value) {
  heap_exit_begin();
  heap_thread_exit((gpa_heap_t *)value);
  heap_exit_end();
}

/* Locks of the layers above, taken before the core's (they never hold
 * one while waiting for a core lock). */
#define GPA_FORK_HOOKS 4
static struct {
  void (*prepare)(void), (*parent)(void), (*child)(void);
} fork_hooks[GPA_FORK_HOOKS];
static hook_count_t fork_hook_count;

bool instance_add_fork_hook(void (*prepare)(void), void (*parent)(void), void (*child)(void)) {
  size_t i;
  if (!hook_claim(&fork_hook_count, GPA_FORK_HOOKS, &i)) return false;
  fork_hooks[i].prepare = prepare;
  fork_hooks[i].parent = parent;
  fork_hooks[i].child = child;
  hook_publish(&fork_hook_count, i);
  return true;
}

static size_t fork_hooks_set(void) { return hooks_set(&fork_hook_count); }

/* fork(): no lock may be held by a thread that does not exist in the child.
 * Order: the hooks, the registry, then each instance (as
 * thread_slot_release takes them). */
static void on_fork_prepare(void) {
  for (size_t i = 0; i < fork_hooks_set(); i++) fork_hooks[i].prepare();
  pthread_mutex_lock(&registry_lock);
  for (gpa_instance_t *inst = registry_first; inst != NULL; inst = inst->next_live) instance_lock(inst);
  instance_lock(&gpa_default_instance);
}
static void on_fork_parent(void) {
  instance_unlock(&gpa_default_instance);
  for (gpa_instance_t *inst = registry_first; inst != NULL; inst = inst->next_live) instance_unlock(inst);
  pthread_mutex_unlock(&registry_lock);
  for (size_t i = fork_hooks_set(); i-- > 0;) fork_hooks[i].parent();
}
/* The child's heaps draw fresh slab keys: keys left in a pool copied from
 * the parent would repeat the parent's next ones. */
static void instance_drop_random_pools(gpa_instance_t *inst) {
  for (gpa_heap_t *h = inst->all_heaps; h != NULL; h = h->next_all) h->random_left = 0;
}
static void on_fork_child(void) {
  pthread_mutex_init(&gpa_default_instance.lock, NULL);
  instance_drop_random_pools(&gpa_default_instance);
  for (gpa_instance_t *inst = registry_first; inst != NULL; inst = inst->next_live) {
    pthread_mutex_init(&inst->lock, NULL);
    instance_drop_random_pools(inst);
  }
  pthread_mutex_init(&registry_lock, NULL);
  for (size_t i = fork_hooks_set(); i-- > 0;) fork_hooks[i].child();
}

/* Registers the thread-exit hook and the fork handlers.  pthread_atfork may
 * itself call malloc; that nested call sees state 1 and goes ahead without
 * waiting, since everything malloc needs is already usable. */
void instance_ensure_process_init(void) {
  int expected = 0;
  if (atomic_load_explicit(&process_init_state, memory_order_acquire) != 0) return;
  if (!atomic_compare_exchange_strong(&process_init_state, &expected, 1)) return;
  pthread_key_create(&thread_exit_key, on_thread_exit);
  pthread_key_create(&instance_heaps_key, on_thread_exit_instances);
  pthread_atfork(on_fork_prepare, on_fork_parent, on_fork_child);
  atomic_store_explicit(&process_init_state, 2, memory_order_release);
}

/* Called once the thread has a heap: arms the thread-exit hook.  Keys below
 * 32 are stored inside the thread descriptor without allocating. */
void instance_register_thread(gpa_heap_t *h) {
  if (atomic_load_explicit(&process_init_state, memory_order_acquire) == 2)
    pthread_setspecific(thread_exit_key, h);
}

__attribute__((constructor)) static void gpa_process_constructor(void) {
  instance_ensure_process_init();
}
