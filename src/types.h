/*
 * types.h: the data of the allocator core, with the constants that shape it.
 *
 * Memory comes from the kernel in segments: GPA_SEGMENT_SIZE bytes aligned to
 * their own size, so the segment of any pointer is found by masking.  A small
 * segment is cut into GPA_PAGES_PER_SEGMENT pages; page 0 holds the segment
 * header, and runs of the other pages become slabs, each holding blocks of
 * one size class.  A large object is a segment of its own whose header sits
 * in front of the user's pointer.
 *
 * Ownership: a small segment belongs to one heap, and a heap to one thread at
 * a time, so only the owner touches a slab's free list.  Other threads return
 * blocks through the slab's atomic `thread_free` list.
 */
#ifndef GPA_TYPES_H
#define GPA_TYPES_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 4 MiB segments: big enough to amortise one mmap over many slabs, small
 * enough that a thread's first segment costs little address space. */
#define GPA_SEGMENT_SHIFT 22
#define GPA_SEGMENT_SIZE ((size_t)1 << GPA_SEGMENT_SHIFT)
#define GPA_SEGMENT_MASK (GPA_SEGMENT_SIZE - 1)

/* 64 KiB slab pages: the unit a slab is made of (64 per segment). */
#define GPA_PAGE_SHIFT 16
#define GPA_PAGE_SIZE ((size_t)1 << GPA_PAGE_SHIFT)
#define GPA_PAGES_PER_SEGMENT (GPA_SEGMENT_SIZE / GPA_PAGE_SIZE)

/* Every block is 16-byte aligned, as glibc guarantees on x86-64. */
#define GPA_MIN_ALIGN 16

/* Size classes: 16..128 in steps of 16, then four per doubling (waste at most
 * 20%) up to GPA_SMALL_MAX.  Anything larger is a large object (a mapping of
 * its own), and so are the sizes above GPA_SLAB_SINGLE_MIN while the
 * instance has fewer than GPA_LARGE_MAPPINGS_MAX live large blocks: see
 * size_takes_mapping. */
#define GPA_CLASS_COUNT 60
#define GPA_SMALL_MAX ((size_t)1024 * 1024)

/* Sizes up to GPA_DIRECT_MAX find their slab with one table load. */
#define GPA_DIRECT_MAX 1024
#define GPA_DIRECT_SLOTS (GPA_DIRECT_MAX / 16 + 1)

/* A slab spans enough pages for GPA_SLAB_MIN_BLOCKS blocks, at most
 * GPA_SLAB_MAX_PAGES pages (1 MiB), so large classes do not pin whole
 * segments.  Four (it was eight) changes only the classes above 16 KiB:
 * one live block then pins half as many pages.  Measured: peak RSS of
 * realloc_growth strings 58.6 -> 46.7 MiB, alloc_test 13.8 -> 12.2 MiB,
 * no run measurably slower (a 64..256 KiB replace loop took 12% more page
 * faults); two blocks saved more but made that loop 1.6 times as slow,
 * each near-empty slab retired and faulted back in. */
#define GPA_SLAB_MIN_BLOCKS 4
#define GPA_SLAB_MAX_PAGES 16

/* Classes too big for GPA_SLAB_MIN_BLOCKS blocks in GPA_SLAB_MAX_PAGES pages
 * (those above 256 KiB) are whole numbers of pages and get one block per
 * slab: a live block pins only its own pages, and its slab retires (its
 * pages age out, see segment_age_dirty) when it is freed. */
#define GPA_SLAB_SINGLE_MIN ((size_t)GPA_SLAB_MAX_PAGES * GPA_PAGE_SIZE / GPA_SLAB_MIN_BLOCKS)

/* Live large blocks (one mapping each) an instance keeps before sizes up to
 * GPA_SMALL_MAX move into single-block slabs.  Segments come from one
 * contiguous area and the kernel merges them, so slabs cost few mappings,
 * whereas a mapping per block ran out of the kernel's (vm.max_map_count,
 * 65,530 by default) at about 65,000 live 300 KiB blocks.  Below this count
 * those sizes keep the large path's cache of warm freed mappings and its
 * mremap moves, which a program with a few big blocks in flux (mstress)
 * ran 1.3 to 1.7 times as slow without.  A sixteenth of the default limit,
 * so the program keeps the rest. */
#define GPA_LARGE_MAPPINGS_MAX 4096

/* A slab's free list grows by at most one OS page of blocks at a time so
 * untouched memory never becomes resident. */
#define GPA_EXTEND_BYTES 4096

/* Dirty free pages are handed back (madvise) a generation late: whenever a
 * heap has retired this many bytes of slabs, its older dirty pages still
 * unused go (see heap_retire_slab).  Frees that empty memory give it back
 * soon; a slab freed and reallocated costs no syscall. */
#define GPA_PURGE_THRESHOLD ((size_t)2 << 20)

/* Free segments kept per instance for reuse before they are unmapped. */
#define GPA_SEGMENT_CACHE_MAX 4

/* Large objects: freed mappings kept for reuse, to spare mmap/munmap and
 * page faults on programs that cycle big buffers.  The bytes kept follow
 * the live large bytes (a quarter of them, see large.c), within these
 * bounds, so memory a program frees for good still leaves the process. */
#define GPA_LARGE_CACHE_SLOTS 16
#define GPA_LARGE_CACHE_MIN_BYTES ((size_t)8 << 20)
#define GPA_LARGE_CACHE_MAX_BYTES ((size_t)256 << 20)

/* Slab keys come from the kernel in batches of this many words: one
 * getrandom(2) call per 16 new slabs. */
#define GPA_HEAP_RANDOM_WORDS 16

/* A free block's first two words (every block holds at least 16 bytes).
 * Links are block indices, not addresses: whatever a program writes into a
 * freed block, the allocator follows a link only once it has checked that
 * the index names a carved block of the same slab (slab_pop_block).  A
 * remote free list (thread_free) links addresses, which the owner checks
 * one by one as it collects them (slab_collect). */
typedef struct gpa_block {
  uintptr_t next_encoded; /* owner's list: next block's index XOR the slab's key;
                             remote list: next block's address XOR the key */
  uintptr_t free_mark;    /* the slab's key while free, 0 once handed out */
} gpa_block_t;

/* The end of a slab's free list: an index no slab reaches (a slab holds at
 * most GPA_SLAB_MAX_PAGES * GPA_PAGE_SIZE / GPA_MIN_ALIGN blocks). */
#define GPA_LIST_END UINT32_MAX

struct gpa_heap;
struct gpa_instance;

typedef struct gpa_slab {
  uint32_t free_index;      /* owner's free list: index of its first block, or GPA_LIST_END */
  uint32_t used;            /* blocks handed out, remote frees not yet collected included
                               (1 while parked: see heap_park_slab) */
  uint32_t capacity;        /* blocks carved so far (lazily, GPA_EXTEND_BYTES at a time) */
  uint32_t block_size;
  uint8_t *start;           /* first block */
  uintptr_t key;            /* random per slab: encodes links, marks free blocks */
  _Atomic(uint32_t) carved_bytes; /* capacity * block_size; read by remote frees, so atomic */
  uint32_t reserved;        /* blocks that fit in the slab */
  uint64_t divides;         /* UINT64_MAX / block_size + 1: a multiply tests "is a block offset"
                               and its high half is the block's index */
  uint8_t class_index;
  uint8_t page_count;
  uint8_t in_full;          /* parked on the heap's full list, not its class queue (owner only) */
  uint8_t in_use;
  uint32_t parked_used;     /* `used` while parked */
  _Atomic(uintptr_t) thread_free; /* blocks freed by other threads (encoded list) | SLAB_FULL_FLAG */
  struct gpa_slab *next, *prev;   /* class queue or full list */
} gpa_slab_t;
_Static_assert((uint64_t)GPA_SLAB_MAX_PAGES * GPA_PAGE_SIZE / GPA_MIN_ALIGN < GPA_LIST_END,
               "a block index never reaches the list's end marker");
_Static_assert((uint64_t)GPA_SLAB_MAX_PAGES * GPA_PAGE_SIZE < ((uint64_t)1 << 32),
               "block offsets stay below 2^32, where the divisibility multiply is exact");

typedef enum { GPA_SEGMENT_SMALL = 1, GPA_SEGMENT_LARGE = 2 } gpa_segment_kind_t;

typedef struct gpa_segment {
  struct gpa_heap *owner;      /* small: owning heap; large: the large sentinel */
  struct gpa_instance *instance;
  uint32_t kind;
  uint32_t used_pages;         /* pages in live slabs (small) */
  uint64_t free_pages;         /* bit i: page i holds no slab */
  uint64_t dirty_pages;        /* bit i: free page that may still be resident */
  uint64_t aged_pages;         /* dirty pages already seen at the last purge check */
  size_t mapped_size;          /* bytes mapped from the OS */
  uint64_t heap_order;         /* small: when its heap took it (higher is newer) */
  /* large objects only */
  uint8_t *large_ptr;          /* the pointer handed out */
  size_t large_size;           /* bytes requested */
  struct gpa_segment *next, *prev; /* heap's segment list, or a cache */
  struct gpa_slab *page_slab[GPA_PAGES_PER_SEGMENT]; /* page -> its slab (slabs[0], never carved, if none) */
  gpa_slab_t slabs[GPA_PAGES_PER_SEGMENT];  /* indexed by a slab's first page */
} gpa_segment_t;

typedef struct gpa_slab_queue {
  gpa_slab_t *first, *last;
} gpa_slab_queue_t;

typedef struct gpa_segment_list {
  gpa_segment_t *first, *last;
} gpa_segment_list_t;

typedef struct gpa_heap {
  gpa_slab_t *direct[GPA_DIRECT_SLOTS];     /* current slab for sizes <= GPA_DIRECT_MAX */
  gpa_slab_queue_t queues[GPA_CLASS_COUNT]; /* slabs with room, per class */
  gpa_slab_queue_t full;                    /* slabs with no free block */
  _Atomic(int) remote_pending;              /* a full slab got a remote free */
  struct gpa_instance *instance;
  gpa_segment_list_t segments;              /* small segments this heap owns that have free pages */
  gpa_segment_list_t full_segments;         /* and those that have none */
  uint32_t retired_pages;                   /* slab pages retired since dirty pages last aged */
  uint64_t segments_taken;                  /* segments taken so far: their heap_order */
  uint32_t segment_count;                   /* segments on the two lists */
  struct gpa_heap *next_in_pool;            /* instance's pool of unowned heaps */
  struct gpa_heap *next_all;                /* every heap of the instance */
  uint32_t random_left;                     /* words of random_pool not yet used */
  uintptr_t random_pool[GPA_HEAP_RANDOM_WORDS]; /* slab keys, from the kernel a batch at a time */
} gpa_heap_t;

typedef struct gpa_instance {
  pthread_mutex_t lock;            /* pools and caches below; never on a fast path */
  uint64_t id;                     /* unique for the process's lifetime, never reused */
  const void *state;               /* the gpa_t it serves, for reports (NULL: malloc's) */
  bool thread_safe;                /* false: every thread uses single_heap */
  gpa_heap_t *single_heap;
  struct gpa_instance *next_live;  /* the registry of live explicit instances */
  gpa_segment_t *large_live;       /* live large blocks (explicit instances: deinit frees them) */
  struct overaligned_header *overaligned_live;
  uint8_t *heap_chunks;            /* every chunk heaps were carved from, linked through their first word */
  gpa_heap_t *heap_pool;           /* heaps whose thread exited, ready for adoption */
  gpa_heap_t *all_heaps;
  gpa_segment_t *segment_cache;    /* free small segments kept for reuse */
  size_t segment_cache_count;
  gpa_segment_t *large_cache[GPA_LARGE_CACHE_SLOTS]; /* freed large mappings, oldest first */
  size_t large_cache_count;
  size_t large_cache_bytes;
  uint8_t *heap_chunk;             /* memory heaps are carved from */
  size_t heap_chunk_left;
  _Atomic(size_t) small_mapped;    /* bytes in small segments */
  _Atomic(size_t) slab_bytes;      /* bytes of pages in live slabs */
  _Atomic(size_t) large_mapped;    /* bytes in large objects, cached ones included */
  _Atomic(size_t) large_in_use;    /* bytes requested by live large objects */
  _Atomic(size_t) large_count;
} gpa_instance_t;

#endif /* GPA_TYPES_H */
