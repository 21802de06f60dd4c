/*
 * debug_report.c: the debug layer's end-of-run reports: leaks grouped by
 * allocation stack (with what the process can still reach, at exit) and
 * the statistics table.  Work memory comes from the os layer; nothing here
 * allocates from the heap it reports on.
 */
#include <string.h>
#include <unistd.h>

#include "debug.h"
#include "debug_pause.h"
#include "debug_reach.h"
#include "debug_threads.h"
#include "writer.h"
#include "os.h"
#include "size_class.h"

/* ---- sorting without malloc ------------------------------------------------
 * Heapsort: in place, O(n log n) worst case, no recursion (qsort may
 * allocate a buffer for large arrays). */

typedef int (*compare_fn)(const void *a, const void *b);

static void swap_bytes(uint8_t *a, uint8_t *b, size_t size) {
  for (size_t i = 0; i < size; i++) {
    uint8_t t = a[i];
    a[i] = b[i];
    b[i] = t;
  }
}

static void sift_down(uint8_t *base, size_t size, size_t root, size_t n, compare_fn cmp) {
  for (;;) {
    size_t child = 2 * root + 1;
    if (child >= n) return;
    if (child + 1 < n && cmp(base + child * size, base + (child + 1) * size) < 0) child++;
    if (cmp(base + root * size, base + child * size) >= 0) return;
    swap_bytes(base + root * size, base + child * size, size);
    root = child;
  }
}

static void heap_sort(void *array, size_t n, size_t size, compare_fn cmp) {
  uint8_t *base = array;
  if (n < 2) return;
  for (size_t i = n / 2; i-- > 0;) sift_down(base, size, i, n, cmp);
  for (size_t end = n - 1; end > 0; end--) {
    swap_bytes(base, base + end * size, size);
    sift_down(base, size, 0, end, cmp);
  }
}

static int by_address(const void *a, const void *b) {
  const reach_block_t *x = a, *y = b;
  return x->start < y->start ? -1 : x->start > y->start;
}

/* State (direct, indirect, reachable), then allocation stack. */
static int by_state_and_stack(const void *a, const void *b) {
  const reach_block_t *x = a, *y = b;
  if (x->state != y->state) return x->state < y->state ? -1 : 1;
  return x->group < y->group ? -1 : x->group > y->group;
}

typedef struct leak_group {
  uint32_t state;
  stack_id_t stack;
  size_t bytes, count;
} leak_group_t;

/* Largest first. */
static int by_bytes_descending(const void *a, const void *b) {
  const leak_group_t *x = a, *y = b;
  if (x->state != y->state) return x->state < y->state ? -1 : 1;
  return x->bytes > y->bytes ? -1 : x->bytes < y->bytes;
}

/* ---- memory for the report --------------------------------------------------- */

static size_t round_to_pages(size_t bytes) {
  size_t page = os_page_size();
  return (bytes + page - 1) & ~(page - 1);
}

/* The allocator's own memory is never a root: its segments (small and
 * large) are skipped whole, blocks in them scanned only when reached; so
 * are the tables that cannot hold a block's address and would only cost
 * time (the segment map, 32 MiB of bytes, and the stack depot). */
static bool in_allocator_memory(void *ctx, uintptr_t addr, uintptr_t *end) {
  (void)ctx;
  uintptr_t map = (uintptr_t)gpa_segmap;
  if (addr >= map && addr < map + sizeof gpa_segmap) {
    *end = map + sizeof gpa_segmap;
    return true;
  }
  if (debug_stack_owns(addr, end)) return true;
  gpa_segment_t *seg = segment_of((const void *)addr);
  if (!segmap_contains(seg)) return false;
  *end = (uintptr_t)seg + seg->mapped_size;
  return true;
}

/* Nor is the stack of a thread that has ended, kept by the C library for
 * its next thread: what is left on it reaches nothing. */
static bool ended_thread_stack(void *ctx, uintptr_t lo, uintptr_t *end) {
  (void)ctx;
  return debug_threads_ended_stack(lo, end);
}

static const char *const state_titles[] = {
  [REACH_DIRECT] = "Direct leak",
  [REACH_INDIRECT] = "Indirect leak",
  [REACH_REACHABLE] = "Still reachable",
};

/* Whose blocks a report is about: "malloc (process N)" or "the gpa_t at 0x...". */
static void write_owner(writer_t *w, const debug_t *d) {
  if (d->owner == NULL) {
    writer_str(w, "malloc (process ");
    writer_dec(w, (uint64_t)getpid());
    writer_char(w, ')');
  } else {
    writer_str(w, "the gpa_t at ");
    writer_hex(w, (uintptr_t)d->owner);
  }
}

static void report_title(writer_t *w, const debug_t *d, size_t live, bool at_exit) {
  writer_str(w, "gpa: leak report for ");
  write_owner(w, d);
  writer_str(w, ": ");
  writer_dec(w, live);
  writer_str(w, at_exit ? " block(s) still live at exit\n" : " block(s) still live at gpa_deinit\n");
}

/* At exit, a clean check says so in one line: a run asked for leak checking
 * and silence would not tell "no leaks" from "never checked". */
static void report_no_leaks(debug_t *d, size_t reachable_bytes, size_t reachable_blocks) {
  writer_t w;
  writer_init(&w, debug_log_fd(d));
  writer_str(&w, "gpa: leak check at exit (process ");
  writer_dec(&w, (uint64_t)getpid());
  writer_str(&w, "): no leaks; ");
  writer_dec(&w, reachable_bytes);
  writer_str(&w, " byte(s) in ");
  writer_dec(&w, reachable_blocks);
  writer_str(&w, " block(s) still reachable.\n");
  writer_flush(&w);
}

static void count_block(void *ctx, debug_header_t *h) {
  (void)h;
  ++*(size_t *)ctx;
}

typedef struct block_list {
  reach_block_t *blocks;
  size_t count, room;
} block_list_t;

static void list_block(void *ctx, debug_header_t *h) {
  block_list_t *list = ctx;
  if (list->count < list->room)
    list->blocks[list->count++] =
        (reach_block_t){.start = (uintptr_t)h + h->pad, .size = h->size, .group = h->alloc_stack};
}

size_t debug_report_leaks(debug_t *d, bool at_exit) {
  /* No block may be made or freed while the blocks are listed and the
   * memory scanned; the report itself is written after resuming (dladdr
   * takes the loader's lock, which a paused thread may hold). */
  debug_pause_all();
  size_t n = 0;
  debug_for_each_live(d, count_block, &n);
  if (n == 0) {
    debug_resume_all();
    if (at_exit) report_no_leaks(d, 0, 0);
    return 0;
  }
  size_t blocks_size = round_to_pages(n * sizeof(reach_block_t));
  size_t groups_size = round_to_pages(n * sizeof(leak_group_t));
  reach_block_t *blocks = os_reserve_aligned(blocks_size, os_page_size());
  leak_group_t *groups = os_reserve_aligned(groups_size, os_page_size());
  writer_t w;
  writer_init(&w, debug_log_fd(d));
  if (blocks == NULL || groups == NULL) {
    writer_str(&w, "gpa: leak report: out of memory for the report; ");
    writer_dec(&w, n);
    writer_str(&w, " block(s) still live\n");
    writer_flush(&w);
    if (blocks != NULL) os_release(blocks, blocks_size);
    if (groups != NULL) os_release(groups, groups_size);
    debug_resume_all();
    return n;
  }
  block_list_t list = {.blocks = blocks, .room = n};
  debug_for_each_live(d, list_block, &list);
  size_t count = list.count;
  heap_sort(blocks, count, sizeof *blocks, by_address);
  if (at_exit) {
    /* The other threads' registers are roots too: held still meanwhile. */
    debug_threads_stop();
    debug_reach_classify(blocks, count, in_allocator_memory, ended_thread_stack, NULL,
                         (uintptr_t)__builtin_frame_address(0));
    debug_threads_resume();
  }
  debug_resume_all();

  heap_sort(blocks, count, sizeof *blocks, by_state_and_stack);
  size_t group_count = 0;
  size_t totals[3][2] = {{0}}; /* per state: bytes, blocks */
  for (size_t i = 0; i < count; i++) {
    reach_block_t *b = &blocks[i];
    if (group_count == 0 || groups[group_count - 1].state != b->state || groups[group_count - 1].stack != b->group)
      groups[group_count++] = (leak_group_t){.state = b->state, .stack = b->group};
    groups[group_count - 1].bytes += b->size;
    groups[group_count - 1].count++;
    totals[b->state][0] += b->size;
    totals[b->state][1]++;
  }
  heap_sort(groups, group_count, sizeof *groups, by_bytes_descending);

  size_t leaked_blocks = totals[REACH_DIRECT][1] + totals[REACH_INDIRECT][1];
  size_t leaked_bytes = totals[REACH_DIRECT][0] + totals[REACH_INDIRECT][0];
  if (leaked_blocks != 0 || d->config.show_reachable) {
    report_title(&w, d, count, at_exit);
    for (size_t i = 0; i < group_count; i++) {
      const leak_group_t *g = &groups[i];
      if (g->state == REACH_REACHABLE && !d->config.show_reachable) continue;
      writer_char(&w, '\n');
      writer_str(&w, state_titles[g->state]);
      writer_str(&w, " of ");
      writer_dec(&w, g->bytes);
      writer_str(&w, " byte(s) in ");
      writer_dec(&w, g->count);
      writer_str(&w, " object(s) allocated from:\n");
      debug_stack_print(&w, g->stack, "    ");
    }
    writer_str(&w, "\nSUMMARY: gpa: ");
    writer_dec(&w, leaked_bytes);
    writer_str(&w, " byte(s) leaked in ");
    writer_dec(&w, leaked_blocks);
    writer_str(&w, " allocation(s)");
    if (at_exit) {
      writer_str(&w, " (");
      writer_dec(&w, totals[REACH_DIRECT][0]);
      writer_str(&w, " direct, ");
      writer_dec(&w, totals[REACH_INDIRECT][0]);
      writer_str(&w, " indirect); ");
      writer_dec(&w, totals[REACH_REACHABLE][0]);
      writer_str(&w, " byte(s) in ");
      writer_dec(&w, totals[REACH_REACHABLE][1]);
      writer_str(&w, " block(s) still reachable");
      if (!d->config.show_reachable) writer_str(&w, " (reachable=1 lists them)");
    }
    writer_str(&w, ".\n");
    writer_flush(&w);
  } else if (at_exit) {
    report_no_leaks(d, totals[REACH_REACHABLE][0], totals[REACH_REACHABLE][1]);
  }
  os_release(blocks, blocks_size);
  os_release(groups, groups_size);
  return leaked_blocks;
}

/* ---- statistics ----------------------------------------------------------------- */

void debug_print_stats(debug_t *d) {
  debug_stats_t st;
  debug_collect_stats(d, &st);
  size_t quarantined = st.quarantine_bytes;
  writer_t w;
  writer_init(&w, debug_log_fd(d));
  writer_str(&w, "gpa: statistics for ");
  write_owner(&w, d);
  writer_str(&w, "\n  live now:     ");
  writer_dec(&w, st.live_bytes);
  writer_str(&w, " byte(s) in ");
  writer_dec(&w, st.live_blocks);
  writer_str(&w, " block(s)\n  peak:         ");
  if (debug_keeps_totals(d)) {
    writer_dec(&w, st.peak_bytes);
    writer_str(&w, " byte(s), ");
    writer_dec(&w, st.peak_blocks);
    writer_str(&w, " block(s)");
  } else {
    writer_str(&w, "not kept (stats=1 or limit= keeps it)");
  }
  writer_str(&w, "\n  total:        ");
  if (d->config.stats) {
    writer_dec(&w, st.total_allocs);
    writer_str(&w, " allocation(s) of ");
    writer_dec(&w, st.total_bytes);
    writer_str(&w, " byte(s), ");
    writer_dec(&w, st.total_frees);
    writer_str(&w, " free(s), ");
  } else {
    writer_str(&w, "not kept (stats=1 keeps it), ");
  }
  writer_dec(&w, st.failed_allocs);
  writer_str(&w, " refused\n  quarantined:  ");
  writer_dec(&w, quarantined);
  writer_str(&w, " byte(s)\n  block size   allocations        live\n");
  for (unsigned row = 0; row < DEBUG_STAT_ROWS; row++) {
    if (st.row_allocs[row] == 0 && st.row_live[row] == 0) continue;
    writer_str(&w, "  ");
    if (row < GPA_CLASS_COUNT) {
      writer_dec_padded(&w, size_class_block_size(row), 10);
    } else {
      writer_str(&w, "     large");
    }
    writer_dec_padded(&w, st.row_allocs[row], 14);
    writer_dec_padded(&w, st.row_live[row], 12);
    writer_char(&w, '\n');
  }
  writer_flush(&w);
}
