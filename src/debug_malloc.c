/*
 * debug_malloc.c: the debug layer for programs that use malloc: deciding
 * from GPA_OPTIONS, on the first call into the allocation family, whether
 * the family goes through a debug state, and the report at exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <unistd.h>

#include "debug.h"
#include "debug_options.h"
#include "writer.h"
#include "os.h"

_Atomic(int) gpa_debug_mode = DEBUG_MODE_UNDECIDED;
debug_t *gpa_debug_malloc;

/* Where log=PATH is kept (the options text itself may change later). */
#define DEBUG_LOG_PATH_MAX 4096
static char log_path[DEBUG_LOG_PATH_MAX];

/* Options that cannot be honoured end the program: running without the
 * checks that were asked for would look like a clean run.  The status of a
 * command-line usage error. */
#define DEBUG_OPTIONS_EXIT 2

static __attribute__((noreturn)) void options_fail(const char *line) {
  writer_t w;
  writer_init(&w, 2);
  writer_str(&w, line);
  writer_char(&w, '\n');
  writer_flush(&w);
  _exit(DEBUG_OPTIONS_EXIT);
}

/* Nothing here may allocate: every allocation would come back here. */
static int decide_now(void) {
  const char *text = debug_options_text();
  if (text == NULL) return DEBUG_MODE_OFF;
  gpa_debug_config_t cfg;
  char err[256];
  if (!debug_options_parse(text, &cfg, log_path, sizeof log_path, err, sizeof err)) options_fail(err);
  gpa_instance_t *inst = instance_create_early(true);
  debug_t *d = inst != NULL ? debug_create(inst, &cfg, NULL) : NULL;
  if (d == NULL) options_fail("gpa: GPA_OPTIONS: no memory for the debug layer");
  d->plain = &gpa_default_instance; /* blocks made through gpa_default() */
  if (cfg.log_path != NULL) {
    int fd = open(cfg.log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      writer_t w;
      writer_init(&w, 2);
      writer_str(&w, "gpa: GPA_OPTIONS: log=");
      writer_str(&w, cfg.log_path);
      writer_str(&w, ": cannot open the file for appending\n");
      writer_flush(&w);
      _exit(DEBUG_OPTIONS_EXIT);
    }
    debug_set_log(d, fd);
  }
  gpa_debug_malloc = d;
  return DEBUG_MODE_ON;
}

bool debug_malloc_decide(void) {
  int mode = atomic_load_explicit(&gpa_debug_mode, memory_order_acquire);
  if (mode == DEBUG_MODE_UNDECIDED) {
    int expected = DEBUG_MODE_UNDECIDED;
    if (atomic_compare_exchange_strong(&gpa_debug_mode, &expected, DEBUG_MODE_DECIDING)) {
      int errno_saved = errno;
      mode = decide_now();
      errno = errno_saved;
      atomic_store_explicit(&gpa_debug_mode, mode, memory_order_release);
      /* Thread-exit keys and fork handlers; pthread_atfork allocates, which
       * from here on goes through the debug state. */
      if (mode == DEBUG_MODE_ON) instance_ensure_process_init();
      return mode == DEBUG_MODE_ON;
    }
  }
  /* Another thread is deciding (it does not allocate meanwhile, so it is
   * never this thread): wait for it. */
  while ((mode = atomic_load_explicit(&gpa_debug_mode, memory_order_acquire)) == DEBUG_MODE_DECIDING) sched_yield();
  return mode == DEBUG_MODE_ON;
}

/* The report at exit.  A destructor, not atexit(): it runs after the
 * program's own atexit handlers and the destructors of the libraries that
 * depend on this one, so what they free is not reported. */
__attribute__((destructor)) static void debug_malloc_at_exit(void) {
  /* A program that never allocated still gets the statistics it asked for. */
  if (!debug_malloc_active()) return;
  debug_t *d = gpa_debug_malloc;
  debug_verify_live(d, "the check at exit");
  debug_verify_quarantine(d, "at exit");
  size_t leaked = d->config.leaks ? debug_report_leaks(d, true) : 0;
  if (d->config.stats) debug_print_stats(d);
  if (leaked != 0 && d->config.leak_exitcode != 0) {
    /* exit() flushes stdio after the destructors; _exit() would not. */
    fflush(NULL);
    _exit(d->config.leak_exitcode);
  }
}
