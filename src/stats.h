/*
 * stats.h: a snapshot of an instance's figures.
 */
#ifndef GPA_STATS_H
#define GPA_STATS_H

#include <stddef.h>

#include "internal.h"

typedef struct gpa_stats {
  size_t small_mapped;     /* bytes of small segments mapped */
  size_t slab_bytes;       /* bytes of pages in live slabs */
  size_t cached_segments;  /* free segments kept for reuse */
  size_t large_mapped;     /* bytes of large mappings, cached ones included */
  size_t large_in_use;     /* bytes requested by live large objects */
  size_t large_count;      /* live large objects */
  size_t large_cached;     /* bytes of freed large mappings kept for reuse */
  size_t purged_total;     /* bytes handed back with madvise so far */
} gpa_stats_t;

void stats_collect(gpa_instance_t *inst, gpa_stats_t *out);

#endif /* GPA_STATS_H */
