/*
 * stats.c: figures about an instance, for mallinfo2() and malloc_stats().
 * Small blocks are counted at slab granularity (bytes of pages that hold
 * live slabs): counting every block would cost the fast paths.
 */
#include "stats.h"

#include "os.h"

void stats_collect(gpa_instance_t *inst, gpa_stats_t *out) {
  out->small_mapped = atomic_load_explicit(&inst->small_mapped, memory_order_relaxed);
  out->slab_bytes = atomic_load_explicit(&inst->slab_bytes, memory_order_relaxed);
  out->large_mapped = atomic_load_explicit(&inst->large_mapped, memory_order_relaxed);
  out->large_in_use = atomic_load_explicit(&inst->large_in_use, memory_order_relaxed);
  out->large_count = atomic_load_explicit(&inst->large_count, memory_order_relaxed);
  instance_lock(inst);
  out->cached_segments = inst->segment_cache_count;
  out->large_cached = inst->large_cache_bytes;
  instance_unlock(inst);
  out->purged_total = os_purged_bytes();
}
