/*
 * debug_reach.c: the reachability scan behind leak reports.  Owns reading
 * the root list (/proc/self/maps), copying root pages without risking a
 * fault, the mark stack, and the three-way classification of blocks into
 * reachable, directly lost and indirectly lost.
 */
#include "debug_reach.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "os.h"

/* Bytes of root memory copied per process_vm_readv.  Copying page by page
 * costs one system call per 4 KiB; 64 pages per call brings the call cost
 * well below the cost of looking the words up, and keeps the per-page
 * iovec list far under IOV_MAX (1024). */
#define READ_CHUNK_BYTES ((size_t)256 << 10)

/* Room for /proc/self/maps text.  A line is at most ~100 bytes of fields
 * plus a path of up to PATH_MAX (4096); several fit, so most reads return
 * many whole lines. */
#define MAPS_BUFFER_BYTES ((size_t)32 << 10)

/* Set in a block's state while the lost-block pass has queued or scanned
 * it, so each lost block is scanned once; cleared before returning.  Far
 * above every reach_state_t value. */
#define STATE_SCANNED_BIT ((uint32_t)1 << 31)

/* Lookup buckets are at least 16 bytes: blocks start 16-aligned, so a
 * finer bucket tells nothing more.  (They are also no more numerous than
 * blocks, so the index costs at most a word per block.) */
#define MIN_BUCKET_SHIFT 4

/* The smallest page size Linux runs with, for sizing the iovec list. */
#define MIN_PAGE_BYTES 4096

#define NO_BLOCK SIZE_MAX
#define WORD_BYTES sizeof(uintptr_t)

typedef struct reach_work {
  reach_block_t *blocks;
  size_t n;
  uintptr_t lowest; /* lowest block start */
  uintptr_t span;   /* to the highest block end: a word w can hit only if w - lowest < span */
  /* Lookup index: [lowest, lowest + span) cut into buckets of 2^bucket_shift
   * bytes; bucket_first[k] is the first block ending after bucket k's start
   * (bucket_first[bucket_count] = n).  A lookup then searches only the
   * blocks of one bucket instead of all of them. */
  size_t *bucket_first;
  size_t bucket_count;
  unsigned bucket_shift;
  size_t *mark_stack; /* indices into blocks; each block is pushed at most once per pass */
  size_t depth;
  uint8_t *copy;      /* READ_CHUNK_BYTES: root bytes copied out of the process */
  char *maps_text;    /* MAPS_BUFFER_BYTES */
  /* Never roots: this work memory and the caller's blocks array (both hold
   * block addresses, so scanning them would keep every block alive). */
  uintptr_t work_lo, work_hi;
  uintptr_t array_lo, array_hi;
  reach_owned_fn owned;
  reach_ended_stack_fn ended_stack;
  void *callback_ctx; /* for owned and ended_stack */
  /* The /proc/self/maps line before: where it ended, and whether it was
   * inaccessible (a guard page below a thread's stack, say). */
  uintptr_t previous_end;
  bool previous_inaccessible;
  uintptr_t stack_from;
  size_t page;
  pid_t pid;
  bool read_in_place; /* process_vm_readv is refused here (seccomp, old kernel) */
} reach_work_t;

static uintptr_t align_down(uintptr_t x, uintptr_t a) { return x & ~(a - 1); }
static uintptr_t align_up(uintptr_t x, uintptr_t a) { return (x + a - 1) & ~(a - 1); }

/* Where a block stops being hit: a size 0 block is hit by its start only. */
static uintptr_t hit_end(const reach_block_t *b) { return b->start + (b->size != 0 ? b->size : 1); }

/* The block containing `addr`, or NO_BLOCK. */
static inline size_t block_hit(const reach_work_t *w, uintptr_t addr) {
  uintptr_t offset = addr - w->lowest;
  if (offset >= w->span) return NO_BLOCK;
  size_t bucket = offset >> w->bucket_shift;
  /* The first block ending after addr lies between the first ending after
   * this bucket's start and the first ending after the next one's. */
  size_t lo = w->bucket_first[bucket], hi = w->bucket_first[bucket + 1];
  if (hi == w->n) hi = w->n - 1; /* addr < the highest end: some block ends after it */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (hit_end(&w->blocks[mid]) <= addr)
      lo = mid + 1;
    else
      hi = mid;
  }
  return w->blocks[lo].start <= addr ? lo : NO_BLOCK;
}

static size_t bucket_count_for(uintptr_t span, unsigned shift) {
  return (size_t)((span - 1) >> shift) + 1;
}

static unsigned choose_bucket_shift(uintptr_t span, size_t n) {
  unsigned shift = MIN_BUCKET_SHIFT;
  while (shift < 63 && bucket_count_for(span, shift) > n) shift++;
  return shift;
}

static void build_index(reach_work_t *w) {
  size_t j = 0;
  for (size_t k = 0; k < w->bucket_count; k++) {
    uintptr_t bucket_start = w->lowest + ((uintptr_t)k << w->bucket_shift);
    while (j < w->n && hit_end(&w->blocks[j]) <= bucket_start) j++;
    w->bucket_first[k] = j;
  }
  w->bucket_first[w->bucket_count] = w->n;
}

/* Index of the first block that ends after `addr` (n if none). */
static size_t first_block_ending_after(const reach_work_t *w, uintptr_t addr) {
  size_t lo = 0, hi = w->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (w->blocks[mid].start + w->blocks[mid].size <= addr)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static void push(reach_work_t *w, size_t i) { w->mark_stack[w->depth++] = i; }

static void mark_reachable(reach_work_t *w, uintptr_t word) {
  size_t i = block_hit(w, word);
  if (i == NO_BLOCK || w->blocks[i].state == REACH_REACHABLE) return;
  w->blocks[i].state = REACH_REACHABLE;
  push(w, i);
}

/* Root words copied from [addr, addr + count words).  Words that lie inside
 * a block are skipped: a block is scanned only when reached, even where
 * `owned` failed to cover the memory it sits in. */
static void scan_root_words(reach_work_t *w, const uintptr_t *words, uintptr_t addr, size_t count) {
  size_t next = first_block_ending_after(w, addr);
  uintptr_t skip_from = next < w->n ? w->blocks[next].start : UINTPTR_MAX;
  const uintptr_t lowest = w->lowest, span = w->span; /* kept in registers */
  for (size_t k = 0; k < count; k++, addr += WORD_BYTES) {
    if (addr >= skip_from) {
      while (next < w->n && addr >= w->blocks[next].start + w->blocks[next].size) next++;
      skip_from = next < w->n ? w->blocks[next].start : UINTPTR_MAX;
      if (addr >= skip_from) continue;
    }
    uintptr_t word = words[k];
    if (word - lowest < span) mark_reachable(w, word);
  }
}

/* Copy [addr, addr + len) (len <= READ_CHUNK_BYTES) into w->copy through
 * the kernel: a page unmapped since /proc/self/maps listed it makes the
 * call stop short instead of faulting.  One remote iovec per page, since
 * partial transfers are promised only at iovec granularity. */
static ssize_t copy_own_memory(reach_work_t *w, uintptr_t addr, size_t len) {
  struct iovec local = { .iov_base = w->copy, .iov_len = len };
  struct iovec remote[READ_CHUNK_BYTES / MIN_PAGE_BYTES + 1]; /* +1: an unaligned start */
  size_t count = 0;
  for (uintptr_t at = addr, end = addr + len; at < end; count++) {
    uintptr_t next = align_down(at, w->page) + w->page;
    if (next > end) next = end;
    remote[count].iov_base = (void *)at;
    remote[count].iov_len = next - at;
    at = next;
  }
  return process_vm_readv(w->pid, &local, 1, remote, count, 0);
}

/* Scan the root bytes [lo, hi): word aligned, free of excluded memory. */
static void scan_root_run(reach_work_t *w, uintptr_t lo, uintptr_t hi) {
  while (lo < hi) {
    if (w->read_in_place) {
      /* Fallback where the kernel refuses the copy: a mapping removed by
       * another thread during the scan would fault here. */
      scan_root_words(w, (const uintptr_t *)lo, lo, (hi - lo) / WORD_BYTES);
      return;
    }
    size_t len = hi - lo < READ_CHUNK_BYTES ? hi - lo : READ_CHUNK_BYTES;
    ssize_t got = copy_own_memory(w, lo, len);
    if (got < 0 && (errno == ENOSYS || errno == EPERM)) {
      w->read_in_place = true;
      continue;
    }
    size_t copied = got > 0 ? (size_t)got : 0;
    scan_root_words(w, (const uintptr_t *)w->copy, lo, copied / WORD_BYTES);
    if (copied == len) {
      lo += len;
    } else {
      /* The page at lo + copied is gone: step over it. */
      lo = align_down(lo + copied, w->page) + w->page;
    }
  }
}

/* If [ex_lo, ex_hi) holds `pos`, return its end; if it starts in
 * (pos, *piece_end), cut the piece there. */
static uintptr_t exclusion_end(uintptr_t pos, uintptr_t *piece_end, uintptr_t ex_lo, uintptr_t ex_hi) {
  if (pos >= ex_lo && pos < ex_hi) return ex_hi;
  if (ex_lo > pos && ex_lo < *piece_end) *piece_end = ex_lo;
  return 0;
}

/* Scan the root range [lo, hi), leaving out the work memory, the blocks
 * array and the allocator's own memory, deciding page by page.  Kept pages
 * that follow each other are copied together. */
static void scan_root_range(reach_work_t *w, uintptr_t lo, uintptr_t hi) {
  lo = align_up(lo, WORD_BYTES);
  hi = align_down(hi, WORD_BYTES);
  uintptr_t run_lo = lo, pos = lo; /* [run_lo, pos): kept, not yet scanned */
  while (pos < hi) {
    uintptr_t piece_end = align_down(pos, w->page) + w->page;
    if (piece_end > hi) piece_end = hi;
    uintptr_t skip_to = exclusion_end(pos, &piece_end, w->work_lo, w->work_hi);
    if (skip_to == 0) skip_to = exclusion_end(pos, &piece_end, w->array_lo, w->array_hi);
    uintptr_t owned_end = 0;
    if (skip_to == 0 && w->owned != NULL && w->owned(w->callback_ctx, pos, &owned_end))
      skip_to = owned_end > pos ? owned_end : piece_end; /* a bad end still moves on */
    if (skip_to != 0) {
      scan_root_run(w, run_lo, pos);
      pos = run_lo = align_up(skip_to, WORD_BYTES);
    } else {
      pos = piece_end;
    }
  }
  if (run_lo < hi) scan_root_run(w, run_lo, hi);
}

static bool parse_hex(const char **p, const char *end, uintptr_t *out) {
  uintptr_t v = 0;
  const char *s = *p;
  while (s < end) {
    char c = *s;
    unsigned digit;
    if (c >= '0' && c <= '9')
      digit = (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
      digit = (unsigned)(c - 'a' + 10);
    else
      break;
    v = v << 4 | digit;
    s++;
  }
  if (s == *p) return false;
  *p = s;
  *out = v;
  return true;
}

static bool starts_with(const char *s, const char *end, const char *prefix) {
  size_t len = strlen(prefix);
  return (size_t)(end - s) >= len && memcmp(s, prefix, len) == 0;
}

/* One line of /proc/self/maps: "start-end perms offset dev inode   path".
 * Readable, writable, private mappings are roots (rw-p, and rwxp where a
 * program has one); the kernel's own pages ([vvar], [vvar_vclock], [vdso],
 * [vsyscall]) never are, nor the stack of an ended thread at the start of a
 * mapping that sits on a guard page (reach_ended_stack_fn). */
static void scan_maps_line(reach_work_t *w, const char *line, size_t len) {
  const char *p = line, *end = line + len;
  uintptr_t start, stop;
  bool guarded = w->previous_inaccessible;
  uintptr_t guard_end = w->previous_end;
  w->previous_end = 0;
  if (!parse_hex(&p, end, &start) || p == end || *p++ != '-') return;
  if (!parse_hex(&p, end, &stop) || p == end || *p++ != ' ') return;
  if (end - p < 4) return;
  w->previous_end = stop;
  w->previous_inaccessible = p[0] == '-' && p[1] == '-' && p[2] == '-';
  if (p[0] != 'r' || p[1] != 'w' || p[3] != 'p') return;
  p += 4;
  for (int field = 0; field < 3; field++) { /* offset, device, inode */
    while (p < end && *p == ' ') p++;
    while (p < end && *p != ' ') p++;
  }
  while (p < end && *p == ' ') p++;
  if (starts_with(p, end, "[vvar") || starts_with(p, end, "[vdso]") || starts_with(p, end, "[vsyscall]"))
    return;
  uintptr_t stack_end;
  if (guarded && guard_end == start && w->ended_stack != NULL && w->ended_stack(w->callback_ctx, start, &stack_end))
    start = stack_end < stop ? stack_end : stop;
  /* The calling thread's stack: only the frames above the checker's. */
  if (w->stack_from >= start && w->stack_from < stop) start = w->stack_from;
  if (start < stop) scan_root_range(w, start, stop);
}

/* Every root, line by line; lines may be split across reads. */
static bool scan_roots(reach_work_t *w) {
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char *buf = w->maps_text;
  size_t have = 0;
  bool in_long_line = false; /* the rest of a line longer than the buffer */
  bool ok = true;
  for (;;) {
    ssize_t got = read(fd, buf + have, MAPS_BUFFER_BYTES - have);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      ok = false;
      break;
    }
    if (got == 0) break;
    have += (size_t)got;
    size_t line = 0;
    const char *nl;
    while ((nl = memchr(buf + line, '\n', have - line)) != NULL) {
      size_t line_end = (size_t)(nl - buf);
      if (!in_long_line) scan_maps_line(w, buf + line, line_end - line);
      in_long_line = false;
      line = line_end + 1;
    }
    memmove(buf, buf + line, have - line);
    have -= line;
    if (have == MAPS_BUFFER_BYTES) {
      /* Every field but the end of the path is in what we hold. */
      if (!in_long_line) scan_maps_line(w, buf, have);
      in_long_line = true;
      have = 0;
    }
  }
  if (ok && have != 0 && !in_long_line) scan_maps_line(w, buf, have);
  close(fd);
  return ok;
}

/* Reachable pass: every block's words, for blocks reached from the roots.
 * Blocks are read in place: they are the caller's, mapped while it holds
 * them (unlike roots, which other threads may unmap). */
static void propagate_reachable(reach_work_t *w) {
  const uintptr_t lowest = w->lowest, span = w->span;
  while (w->depth != 0) {
    const reach_block_t *b = &w->blocks[w->mark_stack[--w->depth]];
    const uintptr_t *word = (const uintptr_t *)align_up(b->start, WORD_BYTES);
    const uintptr_t *stop = (const uintptr_t *)align_down(b->start + b->size, WORD_BYTES);
    for (; word < stop; word++)
      if (*word - lowest < span) mark_reachable(w, *word);
  }
}

/* Lost pass for one block: every other lost block it points to is
 * indirect, and is queued to be scanned in turn unless it already was. */
static void scan_lost_block(reach_work_t *w, size_t self) {
  const reach_block_t *b = &w->blocks[self];
  const uintptr_t *word = (const uintptr_t *)align_up(b->start, WORD_BYTES);
  const uintptr_t *stop = (const uintptr_t *)align_down(b->start + b->size, WORD_BYTES);
  for (; word < stop; word++) {
    size_t j = block_hit(w, *word);
    if (j == NO_BLOCK || j == self) continue;
    uint32_t state = w->blocks[j].state;
    if (state == REACH_REACHABLE) continue;
    if ((state & ~STATE_SCANNED_BIT) == REACH_DIRECT)
      w->blocks[j].state = REACH_INDIRECT | (state & STATE_SCANNED_BIT);
    if (!(state & STATE_SCANNED_BIT)) {
      w->blocks[j].state |= STATE_SCANNED_BIT;
      push(w, j);
    }
  }
}

/* Lost blocks that another lost block points to become indirect; the rest
 * stay direct, the leaks to report first.  The order blocks are visited in
 * does not matter: a block scanned early as direct is made indirect when a
 * lost block pointing to it is scanned later.  A cycle of lost blocks that
 * nothing else points to ends up all indirect (each member is pointed to
 * by another), as in LeakSanitizer's reports; a block pointing only to
 * itself stays direct. */
static void classify_lost(reach_work_t *w) {
  for (size_t i = 0; i < w->n; i++) {
    if (w->blocks[i].state == REACH_REACHABLE || (w->blocks[i].state & STATE_SCANNED_BIT)) continue;
    w->blocks[i].state |= STATE_SCANNED_BIT;
    push(w, i);
    while (w->depth != 0) scan_lost_block(w, w->mark_stack[--w->depth]);
  }
  for (size_t i = 0; i < w->n; i++) w->blocks[i].state &= ~STATE_SCANNED_BIT;
}

bool debug_reach_classify(reach_block_t *blocks, size_t n, reach_owned_fn owned, reach_ended_stack_fn ended_stack,
                          void *ctx, uintptr_t stack_from) {
  for (size_t i = 0; i < n; i++) blocks[i].state = REACH_DIRECT;
  if (n == 0) return true;
  int saved_errno = errno;

  reach_work_t w = {
    .blocks = blocks,
    .n = n,
    .lowest = blocks[0].start,
    .owned = owned,
    .ended_stack = ended_stack,
    .callback_ctx = ctx,
    .stack_from = stack_from,
    .page = os_page_size(),
    .pid = getpid(),
  };
  for (size_t i = 0; i < n; i++) {
    uintptr_t end = hit_end(&blocks[i]);
    if (end - w.lowest > w.span) w.span = end - w.lowest;
  }
  w.bucket_shift = choose_bucket_shift(w.span, n);
  w.bucket_count = bucket_count_for(w.span, w.bucket_shift);

  /* One reservation: copy buffer, maps text, mark stack, index. */
  size_t stack_offset = READ_CHUNK_BYTES + MAPS_BUFFER_BYTES;
  size_t index_offset = stack_offset + n * sizeof(size_t);
  size_t work_size = align_up(index_offset + (w.bucket_count + 1) * sizeof(size_t), w.page);
  uint8_t *work = os_reserve_aligned(work_size, w.page);
  if (work == NULL) {
    errno = saved_errno;
    return false;
  }
  w.copy = work;
  w.maps_text = (char *)(work + READ_CHUNK_BYTES);
  w.mark_stack = (size_t *)(work + stack_offset);
  w.bucket_first = (size_t *)(work + index_offset);
  build_index(&w);
  w.work_lo = (uintptr_t)work;
  w.work_hi = (uintptr_t)work + work_size;
  w.array_lo = (uintptr_t)blocks;
  w.array_hi = (uintptr_t)(blocks + n);

  bool ok = scan_roots(&w);
  if (ok) {
    propagate_reachable(&w);
    classify_lost(&w);
  } else {
    for (size_t i = 0; i < n; i++) blocks[i].state = REACH_DIRECT;
  }
  os_release(work, work_size);
  errno = saved_errno;
  return ok;
}
