/*
 * test_preload.c: libgpa as a drop-in replacement.  This program is NOT
 * linked with libgpa: ctest runs it with LD_PRELOAD naming libgpa.so, the way
 * a user would run an existing binary.  It checks that the preload really
 * replaced the allocator, and that the parts of start-up and of the C library
 * that allocate behind the program's back (dlopen, dynamic TLS, pthread keys,
 * stdio, locales, NSS, fork) keep working.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <iconv.h>
#include <limits.h>
#include <link.h>
#include <locale.h>
#include <malloc.h>
#include <netdb.h>
#include <pthread.h>
#include <pwd.h>
#include <regex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

/* Keeps the compiler from pairing up and deleting a malloc/free. */
static void *escape(void *p) {
  __asm__ volatile("" : "+r"(p) : : "memory");
  return p;
}

static void fill(void *p, size_t n, unsigned seed) {
  unsigned char *c = p;
  for (size_t i = 0; i < n; i++) c[i] = (unsigned char)(seed + i * 31u);
}

static int check_fill(const void *p, size_t n, unsigned seed) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++)
    if (c[i] != (unsigned char)(seed + i * 31u)) return 0;
  return 1;
}

/* xorshift: deterministic sizes without rand()'s shared state. */
static uint32_t next_rand(uint32_t *state) {
  uint32_t x = *state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  *state = x;
  return x;
}

/* A size spread over small, medium and (rarely) large blocks. */
static size_t random_size(uint32_t *state) {
  uint32_t r = next_rand(state);
  switch (r % 16) {
  case 0: return 1 + (r >> 8) % (2u << 20);  /* up to 2 MiB */
  case 1: case 2: return 1 + (r >> 8) % 65536;
  default: return 1 + (r >> 8) % 512;
  }
}

static const char *object_of(const void *addr) {
  Dl_info info;
  if (addr == NULL || dladdr(addr, &info) == 0 || info.dli_fname == NULL) return "";
  return info.dli_fname;
}

/* ---- (a) the preload is active ------------------------------------------ */

static void test_preload_is_active(void **state) {
  (void)state;
  const char *preload = getenv("LD_PRELOAD");
  assert_non_null(preload);
  assert_non_null(strstr(preload, "libgpa"));

  const char *(*version)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "gpa_version");
  assert_non_null(version);
  const char *v = version();
  assert_non_null(v);
  assert_true(v[0] >= '0' && v[0] <= '9');

  /* libgpa is in the process under its SONAME. */
  void *gpa = dlopen("libgpa.so.0", RTLD_NOW | RTLD_NOLOAD);
  assert_non_null(gpa);

  static const char *const family[] = {
    "malloc", "free", "calloc", "realloc", "reallocarray", "aligned_alloc",
    "posix_memalign", "memalign", "valloc", "pvalloc", "malloc_usable_size",
    "malloc_trim", "mallinfo2", "free_sized",
  };
  for (size_t i = 0; i < sizeof family / sizeof family[0]; i++) {
    void *def = dlsym(RTLD_DEFAULT, family[i]);
    void *own = dlsym(gpa, family[i]);
    if (def == NULL || own == NULL || def != own || strstr(object_of(def), "libgpa") == NULL)
      fail_msg("%s resolves to %p in %s, libgpa's is %p", family[i], def, object_of(def), own);
  }

  /* The program's own references bind to libgpa too, not to libc's. */
  assert_ptr_equal((void *)&malloc, dlsym(gpa, "malloc"));
  assert_ptr_equal((void *)&free, dlsym(gpa, "free"));
  void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  assert_non_null(libc);
  assert_ptr_not_equal(dlsym(libc, "malloc"), dlsym(gpa, "malloc"));
  dlclose(libc);
  dlclose(gpa);

  /* Memory from malloc behaves like libgpa's. */
  void *p = escape(malloc(100));
  assert_non_null(p);
  assert_int_equal((uintptr_t)p % 16, 0);
  assert_true(malloc_usable_size(p) >= 100);
  free(p);
}

/* A double free must be caught with libgpa's diagnostic: proof that free()
 * itself is libgpa's.  Run in a child, which aborts. */
static void test_double_free_reports_gpa(void **state) {
  (void)state;
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    void *volatile p = malloc(48);
    free(p);
    free(p);
    _exit(0);
  }
  close(fds[1]);
  char buf[512];
  size_t len = 0;
  ssize_t n;
  while (len < sizeof buf - 1 && (n = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)n;
  buf[len] = '\0';
  close(fds[0]);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT || strstr(buf, "gpa:") == NULL)
    fail_msg("double free: status 0x%x, stderr \"%s\"", status, buf);
}

/* ---- (b) dlopen after start-up ------------------------------------------ */

static void test_dlopen_libm(void **state) {
  (void)state;
  void *h = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
  assert_non_null(h);
  double (*fcos)(double) = (double (*)(double))dlsym(h, "cos");
  double (*fsqrt)(double) = (double (*)(double))dlsym(h, "sqrt");
  assert_non_null(fcos);
  assert_non_null(fsqrt);
  volatile double zero = 0.0, sixteen = 16.0;
  assert_true(fcos(zero) == 1.0);
  assert_true(fsqrt(sixteen) == 4.0);
  assert_int_equal(dlclose(h), 0);
}

typedef int (*compress2_fn)(unsigned char *, unsigned long *, const unsigned char *, unsigned long, int);
typedef int (*uncompress_fn)(unsigned char *, unsigned long *, const unsigned char *, unsigned long);

static void test_dlopen_libz(void **state) {
  (void)state;
  void *h = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    print_message("libz.so.1 not present (%s): skipped\n", dlerror());
    skip();
  }
  compress2_fn zcompress = (compress2_fn)dlsym(h, "compress2");
  uncompress_fn zuncompress = (uncompress_fn)dlsym(h, "uncompress");
  assert_non_null(zcompress);
  assert_non_null(zuncompress);
  /* zlib allocates its state with malloc/calloc and frees it again. */
  for (int round = 0; round < 8; round++) {
    size_t n = (size_t)(1u << 20) + (size_t)round * 4099;
    unsigned char *in = malloc(n);
    assert_non_null(in);
    for (size_t i = 0; i < n; i++) in[i] = (unsigned char)((i * 7 + round) % 61);
    unsigned long zlen = n + n / 100 + 1024;
    unsigned char *z = malloc(zlen);
    assert_non_null(z);
    assert_int_equal(zcompress(z, &zlen, in, n, 1 + round % 9), 0);
    unsigned long outlen = n;
    unsigned char *out = malloc(n);
    assert_non_null(out);
    assert_int_equal(zuncompress(out, &outlen, z, zlen), 0);
    assert_int_equal(outlen, n);
    assert_memory_equal(in, out, n);
    free(out);
    free(z);
    free(in);
  }
  assert_int_equal(dlclose(h), 0);
}

static void test_dlopen_libcrypt(void **state) {
  (void)state;
  void *h = dlopen("libcrypt.so.1", RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    print_message("libcrypt.so.1 not present (%s): skipped\n", dlerror());
    skip();
  }
  char *(*fcrypt)(const char *, const char *) = (char *(*)(const char *, const char *))dlsym(h, "crypt");
  assert_non_null(fcrypt);
  char *r = fcrypt("password", "$6$saltsalt$");
  assert_non_null(r);
  assert_true(strncmp(r, "$6$saltsalt$", 12) == 0);
  dlclose(h);
}

/* operator new in libstdc++ must land in libgpa's malloc: malloc_usable_size
 * aborts on a pointer libgpa did not hand out. */
static void test_dlopen_libstdcxx(void **state) {
  (void)state;
  void *h = dlopen("libstdc++.so.6", RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    print_message("libstdc++.so.6 not present (%s): skipped\n", dlerror());
    skip();
  }
  void *(*op_new)(size_t) = (void *(*)(size_t))dlsym(h, "_Znwm");
  void (*op_delete)(void *) = (void (*)(void *))dlsym(h, "_ZdlPv");
  assert_non_null(op_new);
  assert_non_null(op_delete);
  for (size_t n = 1; n < (4u << 20); n = n * 3 + 1) {
    void *p = op_new(n);
    assert_non_null(p);
    assert_true(malloc_usable_size(p) >= n);
    memset(p, 0x5a, n);
    op_delete(p);
  }
  /* A block from operator new may also go to free(), and vice versa only
   * for malloc'd blocks given to free: check the first. */
  free(op_new(24));
  dlclose(h);
}

/* A dlopen'd library's thread-local storage is allocated with malloc by the
 * dynamic linker (per thread, on first use) and freed at thread exit.  The
 * library is built at run time, since only this file may be added to the
 * test; without a C compiler the test is skipped. */
#define BIG_TLS_BYTES (256 * 1024)

static const char big_tls_source[] =
  "#include <stdint.h>\n"
  "#include <string.h>\n"
  "__thread unsigned char big_tls[" "262144" "] __attribute__((aligned(4096)));\n"
  "__thread int tls_init = 12345;\n"
  "void *big_tls_address(void) { return big_tls; }\n"
  "long big_tls_touch(int seed) {\n"
  "  if (tls_init != 12345) return -1;\n"
  "  for (int i = 0; i < (int)sizeof big_tls; i++) if (big_tls[i] != 0) return -2;\n"
  "  memset(big_tls, seed, sizeof big_tls);\n"
  "  long sum = 0;\n"
  "  for (int i = 0; i < (int)sizeof big_tls; i += 4096) sum += big_tls[i];\n"
  "  tls_init = seed;\n"
  "  return sum;\n"
  "}\n";

typedef struct {
  long (*touch)(int);
  void *(*address)(void);
  int seed;
  long result;
  uintptr_t addr;
} tls_job_t;

static void *tls_thread(void *arg) {
  tls_job_t *job = arg;
  void *scratch = escape(malloc(1000));
  job->result = job->touch(job->seed);
  job->addr = (uintptr_t)job->address();
  free(scratch);
  return NULL;
}

static char *build_tls_library(char *dir) {
  if (mkdtemp(dir) == NULL) return NULL;
  char src[PATH_MAX], lib[PATH_MAX], cmd[3 * PATH_MAX];
  snprintf(src, sizeof src, "%s/bigtls.c", dir);
  snprintf(lib, sizeof lib, "%s/libbigtls.so", dir);
  FILE *f = fopen(src, "w");
  if (f == NULL) return NULL;
  fputs(big_tls_source, f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "cc -shared -fPIC -O1 -o '%s' '%s' >/dev/null 2>&1", lib, src);
  if (system(cmd) != 0) return NULL;
  return strdup(lib);
}

static void remove_tls_library(const char *dir) {
  char cmd[PATH_MAX + 16];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) print_message("could not remove %s\n", dir);
}

static void test_dlopen_large_tls(void **state) {
  (void)state;
  char dir[] = "/tmp/gpa-preload-XXXXXX";
  char *lib = build_tls_library(dir);
  if (lib == NULL) {
    print_message("no working C compiler (cc) to build a TLS library: skipped\n");
    if (dir[0] != '\0' && strstr(dir, "XXXXXX") == NULL) remove_tls_library(dir);
    skip();
  }
  for (int round = 0; round < 3; round++) {
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) fail_msg("dlopen(%s): %s", lib, dlerror());
    long (*touch)(int) = (long (*)(int))dlsym(h, "big_tls_touch");
    void *(*address)(void) = (void *(*)(void))dlsym(h, "big_tls_address");
    assert_non_null(touch);
    assert_non_null(address);

    /* The main thread first, then several threads at once. */
    tls_job_t main_job = { touch, address, 7, 0, 0 };
    tls_thread(&main_job);
    assert_int_equal(main_job.result, 7L * (BIG_TLS_BYTES / 4096));
    assert_int_equal(main_job.addr % 4096, 0);

    enum { N = 6 };
    pthread_t tids[N];
    tls_job_t jobs[N];
    for (int i = 0; i < N; i++) {
      jobs[i] = (tls_job_t){ touch, address, 1 + i + round * N, 0, 0 };
      assert_int_equal(pthread_create(&tids[i], NULL, tls_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < N; i++) {
      assert_int_equal(pthread_join(tids[i], NULL), 0);
      assert_int_equal(jobs[i].result, (long)jobs[i].seed * (BIG_TLS_BYTES / 4096));
      assert_int_equal(jobs[i].addr % 4096, 0);
    }
    assert_int_equal(dlclose(h), 0);
  }
  free(lib);
  remove_tls_library(dir);
}

/* libgpa's own thread-local storage is initial-exec: it must stay small so it
 * does not crowd the static TLS that other libraries may need. */
static int find_gpa_tls(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  if (info->dlpi_name == NULL || strstr(info->dlpi_name, "libgpa") == NULL) return 0;
  size_t *tls = data;
  *tls = 0;
  for (int i = 0; i < info->dlpi_phnum; i++)
    if (info->dlpi_phdr[i].p_type == PT_TLS) *tls = info->dlpi_phdr[i].p_memsz;
  return 1;
}

static void test_own_tls_is_small(void **state) {
  (void)state;
  size_t tls = SIZE_MAX;
  assert_int_equal(dl_iterate_phdr(find_gpa_tls, &tls), 1);
  if (tls > 256) fail_msg("libgpa has %zu bytes of initial-exec TLS", tls);
}

/* ---- (c) pthread keys, many of them ------------------------------------- */

enum { KEY_COUNT = 40, KEY_THREADS = 8, KEY_ROUNDS = 3 };
static pthread_key_t keys[KEY_COUNT];
static atomic_int destructor_calls;
static atomic_int destructor_allocs;

/* Frees the value; the first time round for some keys, also allocates anew
 * and sets the key again, which makes glibc run the destructors again. */
static void key_destructor(void *value) {
  atomic_fetch_add(&destructor_calls, 1);
  size_t *v = value;
  int again = v[0] == 1;
  int key_index = (int)v[1];
  if (!check_fill(v + 2, 40, (unsigned)key_index)) abort();
  free(v);
  if (again) {
    size_t *w = malloc(2 * sizeof(size_t) + 40);
    if (w == NULL) abort();
    w[0] = 0;
    w[1] = (size_t)key_index;
    fill(w + 2, 40, (unsigned)key_index);
    atomic_fetch_add(&destructor_allocs, 1);
    pthread_setspecific(keys[key_index], w);
  }
}

static void *key_thread(void *arg) {
  uint32_t seed = (uint32_t)(uintptr_t)arg * 2654435761u + 1;
  void *churn[64] = { 0 };
  for (int k = 0; k < KEY_COUNT; k++) {
    size_t *v = malloc(2 * sizeof(size_t) + 40);
    if (v == NULL) abort();
    v[0] = (k % 5 == 0);
    v[1] = (size_t)k;
    fill(v + 2, 40, (unsigned)k);
    if (pthread_setspecific(keys[k], v) != 0) abort();
    for (int i = 0; i < 64; i++) {
      free(churn[i]);
      churn[i] = malloc(random_size(&seed));
    }
  }
  for (int i = 0; i < 64; i++) free(churn[i]);
  return NULL;
}

static void test_many_pthread_keys(void **state) {
  (void)state;
  for (int k = 0; k < KEY_COUNT; k++) assert_int_equal(pthread_key_create(&keys[k], key_destructor), 0);
  int expected_calls = 0;
  for (int round = 0; round < KEY_ROUNDS; round++) {
    pthread_t tids[KEY_THREADS];
    for (int t = 0; t < KEY_THREADS; t++)
      assert_int_equal(pthread_create(&tids[t], NULL, key_thread, (void *)(uintptr_t)(t + round * KEY_THREADS + 1)), 0);
    for (int t = 0; t < KEY_THREADS; t++) assert_int_equal(pthread_join(tids[t], NULL), 0);
    expected_calls += KEY_THREADS * (KEY_COUNT + KEY_COUNT / 5);
  }
  assert_int_equal(atomic_load(&destructor_calls), expected_calls);
  assert_int_equal(atomic_load(&destructor_allocs), KEY_ROUNDS * KEY_THREADS * (KEY_COUNT / 5));
  /* The main thread uses the high keys too (it never runs destructors). */
  for (int k = 0; k < KEY_COUNT; k++) {
    void *v = malloc(16);
    assert_int_equal(pthread_setspecific(keys[k], v), 0);
    assert_ptr_equal(pthread_getspecific(keys[k]), v);
    pthread_setspecific(keys[k], NULL);
    free(v);
  }
  for (int k = 0; k < KEY_COUNT; k++) assert_int_equal(pthread_key_delete(keys[k]), 0);
}

/* ---- (d) allocate in one thread, free in another ------------------------ */

enum { XFER_COUNT = 20000 };

typedef struct {
  void **slots;
  size_t *sizes;
  int begin, end;
  uint32_t seed;
} xfer_job_t;

static void *xfer_produce(void *arg) {
  xfer_job_t *job = arg;
  for (int i = job->begin; i < job->end; i++) {
    size_t n = random_size(&job->seed);
    job->slots[i] = malloc(n);
    if (job->slots[i] == NULL) abort();
    job->sizes[i] = n;
    fill(job->slots[i], n < 64 ? n : 64, (unsigned)i);
  }
  return NULL;
}

static void *xfer_consume(void *arg) {
  xfer_job_t *job = arg;
  for (int i = job->begin; i < job->end; i++) {
    size_t n = job->sizes[i];
    if (!check_fill(job->slots[i], n < 64 ? n : 64, (unsigned)i)) abort();
    free(job->slots[i]);
    job->slots[i] = NULL;
  }
  return NULL;
}

/* Bounded queue for a live producer/consumer pair. */
typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  void *items[256];
  size_t lens[256];
  int head, count, done;
} queue_t;

static void *queue_producer(void *arg) {
  queue_t *q = arg;
  uint32_t seed = 99;
  for (int i = 0; i < 100000; i++) {
    size_t n = random_size(&seed) + 1; /* two marker bytes */
    unsigned char *p = malloc(n);
    if (p == NULL) abort();
    p[0] = (unsigned char)i;
    p[n - 1] = (unsigned char)(i >> 3);
    pthread_mutex_lock(&q->lock);
    while (q->count == 256) pthread_cond_wait(&q->cond, &q->lock);
    int slot = (q->head + q->count) % 256;
    q->items[slot] = p;
    q->lens[slot] = n;
    q->count++;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
  }
  pthread_mutex_lock(&q->lock);
  q->done = 1;
  pthread_cond_broadcast(&q->cond);
  pthread_mutex_unlock(&q->lock);
  return NULL;
}

static void *queue_consumer(void *arg) {
  queue_t *q = arg;
  for (int i = 0;; i++) {
    pthread_mutex_lock(&q->lock);
    while (q->count == 0 && !q->done) pthread_cond_wait(&q->cond, &q->lock);
    if (q->count == 0) {
      pthread_mutex_unlock(&q->lock);
      return (void *)(intptr_t)i;
    }
    unsigned char *p = q->items[q->head];
    size_t n = q->lens[q->head];
    q->head = (q->head + 1) % 256;
    q->count--;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
    if (p[0] != (unsigned char)i || p[n - 1] != (unsigned char)(i >> 3)) abort();
    free(p);
  }
}

static void test_cross_thread_free(void **state) {
  (void)state;
  void **slots = calloc(XFER_COUNT, sizeof *slots);
  size_t *sizes = calloc(XFER_COUNT, sizeof *sizes);
  assert_non_null(slots);
  assert_non_null(sizes);
  enum { T = 4 };
  for (int round = 0; round < 3; round++) {
    xfer_job_t jobs[T];
    pthread_t tids[T];
    /* Producers allocate and exit: their heaps are orphaned with live blocks. */
    for (int t = 0; t < T; t++) {
      jobs[t] = (xfer_job_t){ slots, sizes, t * XFER_COUNT / T, (t + 1) * XFER_COUNT / T,
                              (uint32_t)(t * 7919 + round + 1) };
      assert_int_equal(pthread_create(&tids[t], NULL, xfer_produce, &jobs[t]), 0);
    }
    for (int t = 0; t < T; t++) assert_int_equal(pthread_join(tids[t], NULL), 0);
    /* Other threads free them, each a different producer's share. */
    for (int t = 0; t < T; t++) {
      int src = (t + 1) % T;
      jobs[t].begin = src * XFER_COUNT / T;
      jobs[t].end = (src + 1) * XFER_COUNT / T - (t == 0 ? 500 : 0);
      assert_int_equal(pthread_create(&tids[t], NULL, xfer_consume, &jobs[t]), 0);
    }
    for (int t = 0; t < T; t++) assert_int_equal(pthread_join(tids[t], NULL), 0);
    /* And the main thread the rest. */
    xfer_job_t rest = { slots, sizes, 2 * XFER_COUNT / T - 500, 2 * XFER_COUNT / T, 0 };
    xfer_consume(&rest);
    for (int i = 0; i < XFER_COUNT; i++) assert_null(slots[i]);
  }
  free(sizes);
  free(slots);

  queue_t q = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
  pthread_t prod, cons;
  assert_int_equal(pthread_create(&cons, NULL, queue_consumer, &q), 0);
  assert_int_equal(pthread_create(&prod, NULL, queue_producer, &q), 0);
  void *consumed;
  assert_int_equal(pthread_join(prod, NULL), 0);
  assert_int_equal(pthread_join(cons, &consumed), 0);
  assert_int_equal((intptr_t)consumed, 100000);
}

/* ---- (e) C library functions that allocate internally ------------------- */

static int rec_cmp(const void *x, const void *y) {
  uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
  return (a > b) - (a < b);
}

static void test_libc_strings_and_sorting(void **state) {
  (void)state;
  char *s = strdup("hello, preload");
  assert_string_equal(s, "hello, preload");
  free(s);
  s = strndup("abcdefgh", 3);
  assert_string_equal(s, "abc");
  free(s);

  char *a = NULL;
  assert_true(asprintf(&a, "%s-%d-%0*d", "x", 42, 100000, 7) > 100000);
  assert_int_equal(strlen(a), 1 + 1 + 2 + 1 + 100000);
  free(a);

  /* glibc's qsort takes a malloc'd buffer for large arrays. */
  enum { QN = 300000 };
  struct rec { uint32_t key; uint32_t pad[5]; } *recs = malloc(QN * sizeof *recs);
  assert_non_null(recs);
  uint32_t seed = 5;
  for (int i = 0; i < QN; i++) recs[i].key = next_rand(&seed);
  qsort(recs, QN, sizeof *recs, rec_cmp);
  for (int i = 1; i < QN; i++) assert_true(recs[i - 1].key <= recs[i].key);
  free(recs);

  regex_t re;
  assert_int_equal(regcomp(&re, "^([a-z]+)-([0-9]{2,})$", REG_EXTENDED), 0);
  regmatch_t m[3];
  assert_int_equal(regexec(&re, "alpha-1234", 3, m, 0), 0);
  assert_int_equal(m[2].rm_so, 6);
  assert_int_not_equal(regexec(&re, "alpha-1", 3, m, 0), 0);
  regfree(&re);
}

static void test_libc_stdio(void **state) {
  (void)state;
  FILE *f = tmpfile();
  assert_non_null(f);
  /* Lines from empty to 200 KiB, read back with getline (which reallocs). */
  for (int i = 0; i < 40; i++) {
    size_t n = (size_t)i * i * 128;
    for (size_t k = 0; k < n; k++) fputc('a' + (int)(k % 26), f);
    fputc('\n', f);
  }
  rewind(f);
  char *line = NULL;
  size_t cap = 0;
  for (int i = 0; i < 40; i++) {
    ssize_t got = getline(&line, &cap, f);
    assert_int_equal(got, (ssize_t)((size_t)i * i * 128 + 1));
  }
  assert_int_equal(getline(&line, &cap, f), -1);
  free(line);
  fclose(f);

  /* Big formatted output through a stream buffer, and memory streams. */
  size_t big = 3u << 20;
  char *text = malloc(big + 1);
  assert_non_null(text);
  memset(text, 'q', big);
  text[big] = '\0';
  f = tmpfile();
  assert_non_null(f);
  assert_true(setvbuf(f, NULL, _IOFBF, 1 << 16) == 0);
  int w = fprintf(f, "%s|%.*s|%d|%f\n", text, 1000, text, 12345, 2.5);
  assert_int_equal(w, (int)big + 1 + 1000 + 1 + 5 + 1 + 8 + 1);
  assert_int_equal(ftell(f), w);
  fclose(f);

  char *mem = NULL;
  size_t memlen = 0;
  f = open_memstream(&mem, &memlen);
  assert_non_null(f);
  for (int i = 0; i < 200000; i++) fprintf(f, "%d\n", i);
  fclose(f);
  assert_non_null(mem);
  assert_true(memlen > 1000000);
  assert_int_equal(strncmp(mem, "0\n1\n2\n", 6), 0);
  free(mem);
  free(text);

  /* fopen/fclose in a loop: each FILE is malloc'd. */
  for (int i = 0; i < 200; i++) {
    f = fopen("/proc/self/status", "r");
    assert_non_null(f);
    char buf[256];
    assert_non_null(fgets(buf, sizeof buf, f));
    fclose(f);
  }

  /* popen runs a child (which is preloaded too). */
  f = popen("echo preload-child", "r");
  assert_non_null(f);
  char buf[64] = "";
  assert_non_null(fgets(buf, sizeof buf, f));
  assert_string_equal(buf, "preload-child\n");
  assert_int_equal(pclose(f), 0);
}

static void test_libc_locale_dirs_nss(void **state) {
  (void)state;
  assert_non_null(setlocale(LC_ALL, "C.UTF-8"));
  locale_t loc = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t)0);
  assert_true(loc != (locale_t)0);
  locale_t dup = duplocale(loc);
  assert_true(dup != (locale_t)0);
  freelocale(dup);
  freelocale(loc);
  assert_non_null(setlocale(LC_ALL, "C"));

  /* opendir / readdir / closedir, and scandir whose entries the caller frees. */
  DIR *d = opendir("/proc/self/fd");
  assert_non_null(d);
  int entries = 0;
  while (readdir(d) != NULL) entries++;
  closedir(d);
  assert_true(entries >= 3);
  struct dirent **list = NULL;
  int n = scandir("/etc", &list, NULL, alphasort);
  assert_true(n > 2);
  for (int i = 1; i < n; i++) assert_true(strcmp(list[i - 1]->d_name, list[i]->d_name) <= 0);
  for (int i = 0; i < n; i++) free(list[i]);
  free(list);

  glob_t g;
  assert_int_equal(glob("/etc/*", 0, NULL, &g), 0);
  assert_true(g.gl_pathc > 2);
  globfree(&g);

  char *real = realpath("/proc/self/../self/status", NULL);
  assert_non_null(real);
  free(real);

  /* NSS loads its modules with dlopen and allocates the result buffers. */
  struct passwd *pw = getpwuid(0);
  if (pw != NULL) assert_int_equal(pw->pw_uid, 0);
  struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST };
  struct addrinfo *res = NULL;
  assert_int_equal(getaddrinfo("127.0.0.1", "80", &hints, &res), 0);
  assert_non_null(res);
  freeaddrinfo(res);

  /* iconv: gconv modules are dlopen'd for most character sets. */
  iconv_t cd = iconv_open("ISO-8859-15", "UTF-8");
  if (cd != (iconv_t)-1) {
    char in[] = "caf\xc3\xa9 \xe2\x82\xac";
    char out[32];
    char *ip = in, *op = out;
    size_t il = strlen(in), ol = sizeof out;
    assert_true(iconv(cd, &ip, &il, &op, &ol) != (size_t)-1);
    assert_int_equal(op - out, 6);
    assert_int_equal((unsigned char)out[5], 0xa4);
    iconv_close(cd);
  } else {
    print_message("iconv ISO-8859-15 unavailable: that part skipped\n");
  }
}

/* ---- fork while other threads allocate ---------------------------------- */

static atomic_int churn_stop;

static void *churn_thread(void *arg) {
  uint32_t seed = (uint32_t)(uintptr_t)arg;
  void *held[128] = { 0 };
  while (!atomic_load_explicit(&churn_stop, memory_order_relaxed)) {
    int i = (int)(next_rand(&seed) % 128);
    free(held[i]);
    held[i] = malloc(random_size(&seed));
  }
  for (int i = 0; i < 128; i++) free(held[i]);
  return NULL;
}

static void *child_thread(void *arg) {
  (void)arg;
  for (int i = 0; i < 1000; i++) free(escape(malloc((size_t)i * 13 + 1)));
  return NULL;
}

static void test_fork_while_allocating(void **state) {
  (void)state;
  enum { T = 3 };
  pthread_t tids[T];
  atomic_store(&churn_stop, 0);
  for (int t = 0; t < T; t++)
    assert_int_equal(pthread_create(&tids[t], NULL, churn_thread, (void *)(uintptr_t)(t * 101 + 3)), 0);
  for (int i = 0; i < 40; i++) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      alarm(20); /* a deadlocked child dies instead of hanging the test */
      uint32_t seed = (uint32_t)i + 1;
      void *p[64];
      for (int k = 0; k < 64; k++) p[k] = malloc(random_size(&seed));
      for (int k = 0; k < 64; k++) free(p[k]);
      char *s = strdup("child");
      free(s);
      pthread_t t;
      if (pthread_create(&t, NULL, child_thread, NULL) != 0 || pthread_join(t, NULL) != 0) _exit(3);
      _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      fail_msg("child %d after fork: status 0x%x", i, status);
  }
  atomic_store(&churn_stop, 1);
  for (int t = 0; t < T; t++) assert_int_equal(pthread_join(tids[t], NULL), 0);
}

int main(void) {
  /* A deadlock fails the run rather than hanging until ctest's timeout. */
  alarm(300);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_preload_is_active),
    cmocka_unit_test(test_double_free_reports_gpa),
    cmocka_unit_test(test_dlopen_libm),
    cmocka_unit_test(test_dlopen_libz),
    cmocka_unit_test(test_dlopen_libcrypt),
    cmocka_unit_test(test_dlopen_libstdcxx),
    cmocka_unit_test(test_dlopen_large_tls),
    cmocka_unit_test(test_own_tls_is_small),
    cmocka_unit_test(test_many_pthread_keys),
    cmocka_unit_test(test_cross_thread_free),
    cmocka_unit_test(test_libc_strings_and_sorting),
    cmocka_unit_test(test_libc_stdio),
    cmocka_unit_test(test_libc_locale_dirs_nss),
    cmocka_unit_test(test_fork_while_allocating),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
