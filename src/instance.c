/*
 * instance.c: an allocator instance: the state that owns heaps, caches of
 * free segments and large mappings.  The process default instance serves
 * malloc.  Also process-wide set-up: the thread-exit hook and fork safety.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "internal.h"
#include "os.h"

gpa_instance_t gpa_default_instance = {
  .lock = PTHREAD_MUTEX_INITIALIZER,
};

/* Heaps are carved from chunks of this size and never unmapped: a remote
 * free may still write to a heap whose thread has gone. */
#define HEAP_CHUNK_SIZE ((size_t)64 * 1024)



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
    inst->heap_chunk = chunk;
    inst->heap_chunk_left = HEAP_CHUNK_SIZE;
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

/* ---- process set-up ---------------------------------------------------- */

static pthread_key_t thread_exit_key;
static _Atomic(int) process_init_state; /* 0 not started, 1 running, 2 done */

static void on_thread_exit(void *value) {
  heap_thread_exit((gpa_heap_t *)value);
}

/* fork(): no lock may be held by a thread that does not exist in the child. */
static void on_fork_prepare(void) { instance_lock(&gpa_default_instance); }
static void on_fork_parent(void) { instance_unlock(&gpa_default_instance); }
static void on_fork_child(void) { pthread_mutex_init(&gpa_default_instance.lock, NULL); }

/* Registers the thread-exit hook and the fork handlers.  pthread_atfork may
 * itself call malloc; that nested call sees state 1 and goes ahead without
 * waiting, since everything malloc needs is already usable. */
void instance_ensure_process_init(void) {
  int expected = 0;
  if (atomic_load_explicit(&process_init_state, memory_order_acquire) != 0) return;
  if (!atomic_compare_exchange_strong(&process_init_state, &expected, 1)) return;
  pthread_key_create(&thread_exit_key, on_thread_exit);
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
