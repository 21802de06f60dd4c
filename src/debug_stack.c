/*
 * debug_stack.c: capturing call stacks (frame-pointer walk or backtrace()),
 * the depot that keeps each distinct stack once under a small id, and
 * printing a saved stack with symbols.  Compiled with frame pointers.
 */
#include "debug_stack.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "os.h"

/* ---- the library's own code ------------------------------------------------ */

/* Where the library's code lies decides which frames are its own.  When it
 * is a shared object, that object's executable segment is exactly its code.
 * When it is linked into the program (the static library), that segment
 * holds the program's code too; its frames are then told apart by stack
 * position instead: they lie below the stack slot holding ret_addr. */
enum library_layout {
  LAYOUT_UNKNOWN = 0,
  LAYOUT_OWN_MODULE = 1,
  LAYOUT_IN_PROGRAM = 2,
};

static _Atomic(int) library_layout;
static _Atomic(uintptr_t) library_text_start;
static _Atomic(uintptr_t) library_text_end;

typedef struct text_search {
  uintptr_t inside; /* an address of this file's code */
  unsigned modules_seen;
  bool found;
  bool is_program; /* the module is the main program (listed first) */
  uintptr_t start, end;
} text_search_t;

static int find_text_segment(struct dl_phdr_info *info, size_t info_size, void *arg) {
  (void)info_size;
  text_search_t *search = arg;
  bool is_program = search->modules_seen++ == 0;
  for (unsigned i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || (ph->p_flags & PF_X) == 0) continue;
    uintptr_t start = (uintptr_t)info->dlpi_addr + (uintptr_t)ph->p_vaddr;
    uintptr_t end = start + (uintptr_t)ph->p_memsz;
    if (search->inside >= start && search->inside < end) {
      search->found = true;
      search->is_program = is_program;
      search->start = start;
      search->end = end;
      return 1;
    }
  }
  return 0;
}

/* Once per process; threads racing here compute the same answer.
 * dl_iterate_phdr does not allocate (it holds the loader's lock meanwhile). */
static int library_layout_get(void) {
  int layout = atomic_load_explicit(&library_layout, memory_order_acquire);
  if (layout != LAYOUT_UNKNOWN) return layout;
  text_search_t search = { .inside = (uintptr_t)&debug_stack_capture };
  dl_iterate_phdr(find_text_segment, &search);
  layout = LAYOUT_IN_PROGRAM;
  if (search.found && !search.is_program) {
    atomic_store_explicit(&library_text_start, search.start, memory_order_relaxed);
    atomic_store_explicit(&library_text_end, search.end, memory_order_relaxed);
    layout = LAYOUT_OWN_MODULE;
  }
  atomic_store_explicit(&library_layout, layout, memory_order_release);
  return layout;
}

/* ---- the current thread's stack -------------------------------------------- */

/* [thread_stack_lo, thread_stack_hi): the thread's stack, found on its first
 * capture.  hi == 0: not yet looked up; hi == STACK_BOUNDS_UNKNOWN: the
 * lookup is under way (a capture from inside it, as pthread_getattr_np may
 * allocate) or failed. */
static __thread uintptr_t thread_stack_lo __attribute__((tls_model("initial-exec")));
static __thread uintptr_t thread_stack_hi __attribute__((tls_model("initial-exec")));
#define STACK_BOUNDS_UNKNOWN ((uintptr_t)1)

/* The bounds that hold for `here`, an address in the current frame.  When
 * the thread's stack cannot be looked up, only the page holding `here` is
 * sure to be mapped (the stack's end above it is unknown, and reading past
 * a stack's top faults), so the walk keeps to that page: short stacks, never
 * a fault. */
/* The first capture in a thread: look its stack up. */
static __attribute__((noinline)) void stack_bounds_lookup(void) {
  thread_stack_hi = STACK_BOUNDS_UNKNOWN;
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void *addr;
    size_t size;
    if (pthread_attr_getstack(&attr, &addr, &size) == 0 && size != 0) {
      thread_stack_lo = (uintptr_t)addr;
      thread_stack_hi = (uintptr_t)addr + size;
    }
    pthread_attr_destroy(&attr);
  }
}

static inline void stack_bounds(uintptr_t here, uintptr_t *lo, uintptr_t *hi) {
  if (__builtin_expect(thread_stack_hi == 0, 0)) stack_bounds_lookup();
  uintptr_t known_hi = thread_stack_hi;
  if (__builtin_expect(known_hi != STACK_BOUNDS_UNKNOWN, 1)) {
    *lo = thread_stack_lo;
    *hi = known_hi;
    return;
  }
  uintptr_t page = os_page_size();
  *lo = here & ~(page - 1);
  *hi = *lo + page;
}

bool debug_stack_thread_bounds(bool look_up, uintptr_t *lo, uintptr_t *hi) {
  if (thread_stack_hi == 0 && look_up) stack_bounds_lookup();
  if (thread_stack_hi == 0 || thread_stack_hi == STACK_BOUNDS_UNKNOWN) return false;
  *lo = thread_stack_lo;
  *hi = thread_stack_hi;
  return true;
}

/* ---- capture ----------------------------------------------------------------- */

/* A frame record on x86-64 with frame pointers: the caller's frame pointer,
 * then the return address, at the address held in rbp. */
#define FRAME_RECORD_BYTES (2 * sizeof(uintptr_t))

/* The largest step from one frame record to the next that is believed: a
 * real frame that big (1 MiB of locals) is rare next to the 8 MiB default
 * stack, while a register that code without frame pointers reused for data
 * often points somewhere far up the stack. */
#define DEBUG_MAX_FRAME_STEP ((uintptr_t)1 << 20)

/* The most frames of the library's own a walk passes before the program's:
 * the library's deepest path from an entry point to a capture is a handful
 * of calls; past this the code ranges are not what they seem. */
#define DEBUG_MAX_LIBRARY_FRAMES 32

/* How far above the capture the stack slot holding ret_addr is looked for:
 * the library's frames between its entry points and a capture take well
 * under a page; 16 KiB leaves room for a 4 KiB report buffer on the way. */
#define DEBUG_MAX_LIBRARY_STACK ((uintptr_t)16 << 10)

/* backtrace() reports the library's frames too before the program's. */
#define EXACT_TRACE_FRAMES (DEBUG_MAX_FRAMES + DEBUG_MAX_LIBRARY_FRAMES)

static bool in_library_text(uintptr_t addr) {
  return addr >= atomic_load_explicit(&library_text_start, memory_order_relaxed) &&
         addr < atomic_load_explicit(&library_text_end, memory_order_relaxed);
}

/* The address of the stack slot the program's call into the library pushed
 * ret_addr to: the lowest word above `from` holding that value, the caller's
 * frames buffer excepted (it may hold ret_addr from an earlier capture at
 * the same call site).  0 when not found. */
static uintptr_t find_entry_slot(uintptr_t from, uintptr_t hi, uintptr_t ret_addr, const uintptr_t *frames,
                                 unsigned max) {
  uintptr_t buffer_start = (uintptr_t)frames;
  uintptr_t buffer_end = buffer_start + (uintptr_t)max * sizeof(uintptr_t);
  uintptr_t end = hi - from > DEBUG_MAX_LIBRARY_STACK ? from + DEBUG_MAX_LIBRARY_STACK : hi;
  for (uintptr_t slot = from; slot + sizeof(uintptr_t) <= end; slot += sizeof(uintptr_t)) {
    if (slot >= buffer_start && slot < buffer_end) continue;
    if (*(const uintptr_t *)slot == ret_addr) return slot;
  }
  return 0;
}

/* Whether `next`, read from the record at `fp`, is believable as the next
 * record up: above it, not too far, aligned, and inside the stack. */
static bool next_record_ok(uintptr_t fp, uintptr_t next, uintptr_t hi) {
  return next > fp && next - fp <= DEBUG_MAX_FRAME_STEP && next % sizeof(uintptr_t) == 0 &&
         next <= hi - FRAME_RECORD_BYTES;
}

/* Walks (saved frame pointer, return address) records upwards from `fp`,
 * debug_stack_capture's own record: everything this file keeps on the
 * stack (its copies of ret_addr included) lies below it.  Every record read
 * lies inside [lo, hi) and above the previous one, so a chain broken by code
 * without frame pointers ends the stack rather than reading outside it.
 * frames[0] is already set. */
static unsigned capture_fast(uintptr_t *frames, unsigned max, uintptr_t ret_addr, uintptr_t fp) {
  uintptr_t lo, hi;
  stack_bounds(fp, &lo, &hi);
  if (fp < lo || fp > hi - FRAME_RECORD_BYTES || fp % sizeof(uintptr_t) != 0) return 1;
  bool linked_in = library_layout_get() == LAYOUT_IN_PROGRAM;
  uintptr_t entry_slot = 0;
  if (linked_in) {
    entry_slot = find_entry_slot(fp + FRAME_RECORD_BYTES, hi, ret_addr, frames, max);
    if (entry_slot == 0) return 1; /* the library's frames cannot be told from the program's */
  }
  unsigned n = 1;
  unsigned library_frames = 0;
  bool past_library = false;
  bool past_entry = false;
  for (;;) {
    const uintptr_t *record = (const uintptr_t *)fp;
    uintptr_t next = record[0];
    uintptr_t ret = record[1];
    if (!past_library) {
      past_library = linked_in ? fp + sizeof(uintptr_t) >= entry_slot : !in_library_text(ret);
      if (!past_library && ++library_frames > DEBUG_MAX_LIBRARY_FRAMES) return 1;
    }
    if (past_library) {
      if (!past_entry && ret == ret_addr) {
        /* The entry point's own record, when it keeps one: it repeats
         * frames[0], and anything before it was still the library's (a
         * stale copy of ret_addr below the real slot misleads the scan). */
        past_entry = true;
        n = 1;
      } else {
        if (ret == 0 || n == max) break;
        frames[n++] = ret;
      }
    }
    if (!next_record_ok(fp, next, hi)) break;
    fp = next;
  }
  return n;
}

static unsigned capture_exact(uintptr_t *frames, unsigned max, uintptr_t ret_addr) {
  void *trace[EXACT_TRACE_FRAMES];
  /* Each frame costs an unwind-table lookup: go no deeper than needed. */
  unsigned want = max + DEBUG_MAX_LIBRARY_FRAMES;
  int got = backtrace(trace, want < EXACT_TRACE_FRAMES ? (int)want : EXACT_TRACE_FRAMES);
  int start = -1;
  for (int i = 0; i < got; i++) {
    if ((uintptr_t)trace[i] == ret_addr) {
      start = i + 1;
      break;
    }
  }
  if (start < 0) {
    /* Linked into the program, nothing tells the library's frames apart. */
    if (library_layout_get() != LAYOUT_OWN_MODULE) return 1;
    start = 0;
    while (start < got && in_library_text((uintptr_t)trace[start])) start++;
  }
  unsigned n = 1;
  for (int i = start; i < got && n < max; i++) frames[n++] = (uintptr_t)trace[i];
  return n;
}

unsigned debug_stack_capture(uintptr_t *frames, unsigned max, uintptr_t ret_addr, bool exact) {
  if (max == 0) return 0;
  frames[0] = ret_addr; /* find_entry_slot skips the buffer, so this copy cannot mislead it */
  if (max == 1) return 1;
  if (exact) return capture_exact(frames, max, ret_addr);
  return capture_fast(frames, max, ret_addr, (uintptr_t)__builtin_frame_address(0));
}

/* Whether `entry_frame` is a frame record above `here`, inside the stack,
 * that holds ret_addr: the entry point's own. */
static bool entry_record_ok(uintptr_t here, uintptr_t hi, uintptr_t ret_addr, uintptr_t entry_frame) {
  return entry_frame > here && entry_frame <= hi - FRAME_RECORD_BYTES && entry_frame % sizeof(uintptr_t) == 0 &&
         ((const uintptr_t *)entry_frame)[1] == ret_addr;
}

void debug_stack_prime(void) {
  void *trace[1];
  backtrace(trace, 1);
  library_layout_get();
}

/* ---- the depot ---------------------------------------------------------------- */

/* Ids 1 .. DEPOT_MAX_STACKS - 1.  The tables for them are reserved whole up
 * front: the kernel backs a page only when it is first touched, so an idle
 * depot costs address space, not memory. */
#define DEPOT_MAX_STACKS ((uint32_t)1 << 20)
/* Twice the stacks, so open addressing stays at most half full and probe
 * runs stay short. */
#define DEPOT_SLOTS ((size_t)DEPOT_MAX_STACKS * 2)
/* Frames are copied into chunks this big, each a single os reservation. */
#define DEPOT_CHUNK_BYTES ((size_t)1 << 20)
#define DEPOT_CHUNK_WORDS (DEPOT_CHUNK_BYTES / sizeof(uintptr_t))
/* Spins on the depot lock before giving the processor to its holder. */
#define DEPOT_SPINS_BEFORE_YIELD 64

/* The multipliers of SplitMix64's output mix (Steele, Lea and Flood, 2014). */
#define HASH_MUL_A 0xbf58476d1ce4e5b9ull
#define HASH_MUL_B 0x94d049bb133111ebull

typedef struct depot_entry {
  const uintptr_t *frames;
  uint32_t count;
} depot_entry_t;

/* A slot holds (hash >> 32) << 32 | id, 0 when empty: one atomic word that a
 * lookup reads to both filter by hash and find the entry. */
static struct {
  /* Held only to add a stack (a short copy), and a spinlock, not a mutex,
   * so a fork child inherits no mutex state; a fork while another thread
   * holds it leaves the child's copy locked, the one hazard there. */
  atomic_flag lock;
  _Atomic(uint64_t *) slots;    /* published after entries is set */
  depot_entry_t *entries;       /* indexed by id */
  _Atomic(uint32_t) next_id;    /* ids below it have a complete entry */
  uintptr_t *chunk;             /* where the next stack's frames go */
  size_t chunk_words_left;
} depot = { .lock = ATOMIC_FLAG_INIT };

/* A stack's hash, a frame at a time, so a walk can hash as it goes. */
static inline uint64_t hash_step(uint64_t h, uintptr_t frame) {
  h = (h ^ frame) * HASH_MUL_A;
  return h ^ (h >> 31);
}

static inline uint64_t hash_finish(uint64_t h, unsigned n) {
  h ^= n;
  h ^= h >> 30;
  h *= HASH_MUL_B;
  return h ^ (h >> 31);
}

static uint64_t stack_hash(const uintptr_t *frames, unsigned n) {
  uint64_t h = 0;
  for (unsigned i = 0; i < n; i++) h = hash_step(h, frames[i]);
  return hash_finish(h, n);
}

/* A loop, not memcmp: stacks are a few words, and this runs on every
 * allocation and free. */
static bool frames_equal(const uintptr_t *a, const uintptr_t *b, unsigned n) {
  for (unsigned i = 0; i < n; i++)
    if (a[i] != b[i]) return false;
  return true;
}

/* The id of the stack if a slot names it, else 0 with *empty set to the
 * first empty slot of its probe run. */
static stack_id_t depot_find(uint64_t *slots, uint64_t hash, const uintptr_t *frames, unsigned n,
                             size_t *empty) {
  uint64_t tag = hash >> 32;
  for (size_t i = (size_t)hash & (DEPOT_SLOTS - 1);; i = (i + 1) & (DEPOT_SLOTS - 1)) {
    uint64_t word = atomic_load_explicit((_Atomic(uint64_t) *)&slots[i], memory_order_acquire);
    if (word == 0) {
      *empty = i;
      return 0;
    }
    if (word >> 32 != tag) continue;
    stack_id_t id = (stack_id_t)word;
    const depot_entry_t *e = &depot.entries[id];
    if (e->count == n && frames_equal(e->frames, frames, n)) return id;
  }
}

static void depot_lock(void) {
  unsigned spins = 0;
  while (atomic_flag_test_and_set_explicit(&depot.lock, memory_order_acquire)) {
    if (++spins % DEPOT_SPINS_BEFORE_YIELD == 0) sched_yield();
    else __builtin_ia32_pause();
  }
}

static void depot_unlock(void) {
  atomic_flag_clear_explicit(&depot.lock, memory_order_release);
}

/* Under the lock.  False when the os layer refuses the memory. */
static bool depot_init(void) {
  size_t page = os_page_size();
  depot_entry_t *entries = os_reserve_aligned((size_t)DEPOT_MAX_STACKS * sizeof(depot_entry_t), page);
  if (entries == NULL) return false;
  uint64_t *slots = os_reserve_aligned(DEPOT_SLOTS * sizeof(uint64_t), page);
  if (slots == NULL) {
    os_release(entries, (size_t)DEPOT_MAX_STACKS * sizeof(depot_entry_t));
    return false;
  }
  depot.entries = entries;
  atomic_store_explicit(&depot.next_id, 1, memory_order_relaxed);
  atomic_store_explicit(&depot.slots, slots, memory_order_release);
  return true;
}

/* Under the lock: room for n frames, or NULL. */
static uintptr_t *depot_frames_space(unsigned n) {
  if (depot.chunk_words_left < n) {
    uintptr_t *chunk = os_reserve_aligned(DEPOT_CHUNK_BYTES, os_page_size());
    if (chunk == NULL) return NULL;
    depot.chunk = chunk; /* the old chunk's unused tail is left over */
    depot.chunk_words_left = DEPOT_CHUNK_WORDS;
  }
  uintptr_t *space = depot.chunk;
  depot.chunk += n;
  depot.chunk_words_left -= n;
  return space;
}

/* The stacks met lately, in front of the depot: a hot call site's stack is
 * found with one load from a table that stays in the first-level caches
 * (32 KiB), not a probe of the depot's 16 MiB of slots and a compare of
 * every frame.  A word is (hash's bits 20..63) | id (ids take 20 bits): a
 * hit matches the hash on 56 bits (these and the 12 of the index), so a
 * wrong stack would need a 64-bit hash collision on 56 bits, once in some
 * 10^16 lookups.  Written without a lock: a racing writer can only replace
 * a word whole. */
#define RECENT_SLOTS 4096
#define RECENT_ID_BITS 20
_Static_assert(DEPOT_MAX_STACKS <= (uint32_t)1 << RECENT_ID_BITS, "an id fits a recent-table word");
static _Atomic(uint64_t) recent[RECENT_SLOTS];

static stack_id_t recent_find(uint64_t hash) {
  uint64_t word = atomic_load_explicit(&recent[hash & (RECENT_SLOTS - 1)], memory_order_relaxed);
  if (((word ^ hash) >> RECENT_ID_BITS) != 0) return 0;
  return (stack_id_t)(word & (((uint64_t)1 << RECENT_ID_BITS) - 1));
}

static void recent_put(uint64_t hash, stack_id_t id) {
  uint64_t word = (hash >> RECENT_ID_BITS << RECENT_ID_BITS) | id;
  atomic_store_explicit(&recent[hash & (RECENT_SLOTS - 1)], word, memory_order_relaxed);
}

/* The stack's id when the recent table does not have it: from the depot,
 * adding the stack if it is new. */
static __attribute__((noinline)) stack_id_t depot_save(const uintptr_t *frames, unsigned n, uint64_t hash) {
  size_t empty = 0;
  uint64_t *slots = atomic_load_explicit(&depot.slots, memory_order_acquire);
  if (slots != NULL) {
    stack_id_t id = depot_find(slots, hash, frames, n, &empty);
    if (id != 0) {
      recent_put(hash, id);
      return id;
    }
  }

  depot_lock();
  stack_id_t id = 0;
  slots = atomic_load_explicit(&depot.slots, memory_order_relaxed);
  if (slots == NULL && !depot_init()) goto out;
  slots = atomic_load_explicit(&depot.slots, memory_order_relaxed);
  id = depot_find(slots, hash, frames, n, &empty); /* another thread may have added it */
  if (id != 0) goto out;
  uint32_t next = atomic_load_explicit(&depot.next_id, memory_order_relaxed);
  if (next >= DEPOT_MAX_STACKS) goto out;
  uintptr_t *copy = depot_frames_space(n);
  if (copy == NULL) goto out;
  memcpy(copy, frames, n * sizeof(uintptr_t));
  depot.entries[next].frames = copy;
  depot.entries[next].count = n;
  id = next;
  /* The entry is complete before either its id or its slot is seen. */
  atomic_store_explicit(&depot.next_id, next + 1, memory_order_release);
  atomic_store_explicit((_Atomic(uint64_t) *)&slots[empty], (hash >> 32) << 32 | id, memory_order_release);
out:
  depot_unlock();
  if (id != 0) recent_put(hash, id);
  return id;
}

stack_id_t debug_stack_save(const uintptr_t *frames, unsigned n) {
  if (n == 0) return 0;
  if (n > DEBUG_MAX_FRAMES) n = DEBUG_MAX_FRAMES;
  uint64_t hash = stack_hash(frames, n);
  stack_id_t seen = recent_find(hash);
  if (__builtin_expect(seen != 0, 1)) return seen;
  return depot_save(frames, n, hash);
}

stack_id_t debug_stack_capture_id(unsigned max, uintptr_t ret_addr, uintptr_t entry_frame) {
  uintptr_t frames[DEBUG_MAX_FRAMES];
  if (max > DEBUG_MAX_FRAMES) max = DEBUG_MAX_FRAMES;
  if (max <= 1) return debug_stack_save(frames, debug_stack_capture(frames, max, ret_addr, false));
  uintptr_t here = (uintptr_t)__builtin_frame_address(0);
  uintptr_t lo, hi;
  stack_bounds(here, &lo, &hi);
  frames[0] = ret_addr; /* capture_fast's walk skips the buffer, so this copy cannot mislead it */
  if (!entry_record_ok(here, hi, ret_addr, entry_frame))
    return debug_stack_save(frames, capture_fast(frames, max, ret_addr, here));
  /* The program's frames above the entry point's record, each hashed as it
   * is read. */
  unsigned n = 1;
  uint64_t h = hash_step(0, ret_addr);
  for (uintptr_t fp = entry_frame;;) {
    uintptr_t next = ((const uintptr_t *)fp)[0];
    if (!next_record_ok(fp, next, hi)) break;
    fp = next;
    uintptr_t ret = ((const uintptr_t *)fp)[1];
    if (ret == 0 || n == max) break;
    frames[n++] = ret;
    h = hash_step(h, ret);
  }
  uint64_t hash = hash_finish(h, n);
  stack_id_t seen = recent_find(hash);
  if (__builtin_expect(seen != 0, 1)) return seen;
  return depot_save(frames, n, hash);
}

bool debug_stack_owns(uintptr_t addr, uintptr_t *end) {
  uint64_t *slots = atomic_load_explicit(&depot.slots, memory_order_acquire);
  if (slots == NULL) return false;
  uintptr_t entries = (uintptr_t)depot.entries, slots_at = (uintptr_t)slots;
  uintptr_t entries_end = entries + (size_t)DEPOT_MAX_STACKS * sizeof(depot_entry_t);
  uintptr_t slots_end = slots_at + DEPOT_SLOTS * sizeof(uint64_t);
  if (addr >= entries && addr < entries_end) {
    *end = entries_end;
    return true;
  }
  if (addr >= slots_at && addr < slots_end) {
    *end = slots_end;
    return true;
  }
  return false;
}

unsigned debug_stack_load(stack_id_t id, const uintptr_t **frames) {
  *frames = NULL;
  if (id == 0 || id >= atomic_load_explicit(&depot.next_id, memory_order_acquire)) return 0;
  const depot_entry_t *e = &depot.entries[id];
  *frames = e->frames;
  return e->count;
}

/* ---- printing ----------------------------------------------------------------- */

static void print_frame(writer_t *w, unsigned index, uintptr_t addr, const char *indent) {
  writer_str(w, indent);
  writer_char(w, '#');
  writer_dec(w, index);
  writer_char(w, ' ');
  writer_hex(w, addr);
  /* A return address is just after its call: addr - 1 lies in the calling
   * function (the next one may start right after a call to a noreturn
   * function), and is the address addr2line maps to the call's line. */
  uintptr_t pc = addr - 1;
  Dl_info info;
  struct link_map *module = NULL;
  if (addr != 0 && dladdr1((void *)pc, &info, (void **)&module, RTLD_DL_LINKMAP) != 0) {
    if (info.dli_sname != NULL && info.dli_saddr != NULL) {
      writer_str(w, " in ");
      writer_str(w, info.dli_sname);
      writer_char(w, '+');
      writer_hex(w, pc - (uintptr_t)info.dli_saddr);
    }
    if (info.dli_fname != NULL && info.dli_fname[0] != '\0' && module != NULL) {
      writer_str(w, " (");
      writer_str(w, info.dli_fname);
      writer_char(w, '+');
      /* Relative to the load bias, so for a position-dependent program it
       * is the link-time address, which is what addr2line expects there. */
      writer_hex(w, pc - (uintptr_t)module->l_addr);
      writer_char(w, ')');
    }
  }
  writer_char(w, '\n');
}

void debug_stack_print(writer_t *w, stack_id_t id, const char *indent) {
  if (indent == NULL) indent = "";
  const uintptr_t *frames;
  unsigned n = debug_stack_load(id, &frames);
  if (n == 0) {
    writer_str(w, indent);
    writer_str(w, "(no stack recorded)\n");
    return;
  }
  for (unsigned i = 0; i < n; i++) print_frame(w, i, frames[i], indent);
}
