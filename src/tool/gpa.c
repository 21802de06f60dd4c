/*
 * gpa.c: the `gpa` launcher: runs a program with libgpa.so preloaded and
 * GPA_OPTIONS built from command-line flags, and lists the options.  An
 * ordinary program (it may allocate); it shares the option table and
 * parser with the library by compiling debug_options.c in.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "debug_options.h"
#include "debug_stack.h"
#include "gpa.h"

/* Exit statuses, as shells use them: 2 for a usage error (bash, getopt
 * tools), 126 for a program that cannot be run, 127 for one (or, here, a
 * library) that cannot be found. */
#define EXIT_USAGE 2
#define EXIT_CANNOT_RUN 126
#define EXIT_NOT_FOUND 127

/* The directory name distributions put a multiarch library in (Debian's
 * lib/<triplet>/, what GNUInstallDirs' CMAKE_INSTALL_LIBDIR gives there);
 * a build may name its own with -DGPA_MULTIARCH=... */
#ifndef GPA_MULTIARCH
#if defined(__x86_64__) && defined(__ILP32__)
#define GPA_MULTIARCH "x86_64-linux-gnux32"
#elif defined(__x86_64__)
#define GPA_MULTIARCH "x86_64-linux-gnu"
#elif defined(__aarch64__)
#define GPA_MULTIARCH "aarch64-linux-gnu"
#elif defined(__i386__)
#define GPA_MULTIARCH "i386-linux-gnu"
#elif defined(__riscv) && __riscv_xlen == 64
#define GPA_MULTIARCH "riscv64-linux-gnu"
#else
#define GPA_MULTIARCH ""
#endif
#endif

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define GPA_VERSION_TEXT                                                                                   \
  STRINGIFY(GPA_VERSION_MAJOR) "." STRINGIFY(GPA_VERSION_MINOR) "." STRINGIFY(GPA_VERSION_PATCH)

static const char usage_text[] =
    "usage: gpa run [--leaks] [--stats] [--frames N] [--exact-stacks] [--log FILE]\n"
    "               [--options STR] [--] PROGRAM [ARGS...]\n"
    "       gpa options     list the GPA_OPTIONS the library understands\n"
    "       gpa --version\n"
    "       gpa help\n";

static const char run_help_text[] =
    "Runs PROGRAM with libgpa.so preloaded (LD_PRELOAD) and the flags passed to it as\n"
    "GPA_OPTIONS, after any GPA_OPTIONS already set, so the flags win.\n"
    "  --leaks          leaks=1: report blocks still live at exit\n"
    "  --stats          stats=1: print statistics at exit\n"
    "  --frames N       frames=N: stack frames kept per block (0 to " STRINGIFY(DEBUG_MAX_FRAMES) ")\n"
    "  --exact-stacks   stacks=exact: unwind with the C library's unwinder\n"
    "  --log FILE       log=FILE: reports go to FILE (made absolute) instead of stderr\n"
    "  --options STR    STR as given, e.g. --options debug=1:exitcode=0\n"
    "The library is $GPA_LIBRARY if set, else libgpa.so beside this program, else\n"
    "../lib/libgpa.so.0 (or lib/" GPA_MULTIARCH ", lib64) beside it.  The exit status is\n"
    "PROGRAM's; 2 for a usage error, 127 when the library or PROGRAM is not found.\n";

__attribute__((format(printf, 1, 2), noreturn)) static void usage_error(const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  fputs("gpa: ", stderr);
  vfprintf(stderr, fmt, args);
  va_end(args);
  fputc('\n', stderr);
  fputs(usage_text, stderr);
  exit(EXIT_USAGE);
}

static void *checked(void *p) {
  if (p == NULL) {
    fputs("gpa: out of memory\n", stderr);
    exit(EXIT_CANNOT_RUN);
  }
  return p;
}

static char *concat3(const char *a, const char *b, const char *c) {
  size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
  char *s = checked(malloc(la + lb + lc + 1));
  memcpy(s, a, la);
  memcpy(s + la, b, lb);
  memcpy(s + la + lb, c, lc + 1);
  return s;
}

/* `path` made absolute against the current directory (not resolved: the
 * file may not exist yet), so it means the same to a program that later
 * changes directory, and to its children. */
static char *absolute(const char *path) {
  if (path[0] == '/') return checked(strdup(path));
  char *cwd = getcwd(NULL, 0);
  if (cwd == NULL) {
    perror("gpa: getcwd");
    exit(EXIT_CANNOT_RUN);
  }
  char *s = concat3(cwd, "/", path);
  free(cwd);
  return s;
}

/* The options collected from the flags, "a=1:b=2". */
typedef struct option_list {
  char *text;
} option_list_t;

static void add_option(option_list_t *list, const char *item) {
  if (item[0] == '\0') return;
  if (list->text == NULL) {
    list->text = checked(strdup(item));
    return;
  }
  char *joined = concat3(list->text, ":", item);
  free(list->text);
  list->text = joined;
}

/* --frames' value: the library's own range, checked here so the message
 * names the flag rather than GPA_OPTIONS. */
static const char *frames_value(const char *value) {
  size_t n = strlen(value);
  unsigned long v = 0;
  bool ok = n > 0 && n <= 3;
  for (size_t i = 0; ok && i < n; i++) {
    ok = value[i] >= '0' && value[i] <= '9';
    v = v * 10 + (unsigned long)(value[i] - '0');
  }
  if (!ok || v > DEBUG_MAX_FRAMES)
    usage_error("--frames: expected a number from 0 to %u, got '%s'", DEBUG_MAX_FRAMES, value);
  return value;
}

/* The value of a flag that takes one, given as "--flag VALUE" or
 * "--flag=VALUE"; advances *i past what it used. */
static const char *flag_value(char **argv, int argc, int *i, const char *flag) {
  const char *arg = argv[*i];
  size_t n = strlen(flag);
  if (arg[n] == '=') return arg + n + 1;
  if (*i + 1 >= argc) usage_error("%s needs a value", flag);
  (*i)++;
  return argv[*i];
}

static bool flag_is(const char *arg, const char *flag) {
  size_t n = strlen(flag);
  return strncmp(arg, flag, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

static bool is_file(const char *path) { return access(path, R_OK) == 0; }

/* `dir`/`rel`, with `dir`/`rel`'s directory part resolved (so ".." goes),
 * if that file exists; else NULL. */
static char *library_at(const char *dir, const char *rel) {
  char *candidate = concat3(dir, "/", rel);
  if (!is_file(candidate)) {
    free(candidate);
    return NULL;
  }
  char *slash = strrchr(candidate, '/');
  *slash = '\0';
  char *real_dir = realpath(candidate, NULL);
  *slash = '/';
  if (real_dir == NULL) return candidate;
  char *found = concat3(real_dir, "/", slash + 1);
  free(real_dir);
  free(candidate);
  return found;
}

/* libgpa.so: $GPA_LIBRARY; else beside this program (a build tree); else
 * an installed layout's lib directory next to its bin. */
static char *find_library(void) {
  const char *forced = getenv("GPA_LIBRARY");
  if (forced != NULL && forced[0] != '\0') {
    if (!is_file(forced)) {
      fprintf(stderr, "gpa: GPA_LIBRARY=%s: %s\n", forced, strerror(errno));
      exit(EXIT_NOT_FOUND);
    }
    return absolute(forced);
  }
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    perror("gpa: cannot find its own path (/proc/self/exe)");
    exit(EXIT_NOT_FOUND);
  }
  self[n] = '\0';
  char *slash = strrchr(self, '/');
  if (slash != NULL) *slash = '\0';
  const char *dir = slash == self ? "/" : self;

  static const char *const layouts[] = {
    "libgpa.so",
    "../lib/libgpa.so.0",
    "../lib/" GPA_MULTIARCH "/libgpa.so.0",
    "../lib64/libgpa.so.0",
  };
  for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
    char *found = library_at(dir, layouts[i]);
    if (found != NULL) return found;
  }
  fprintf(stderr,
          "gpa: libgpa.so not found beside %s/gpa or in ../lib, ../lib/%s, ../lib64; "
          "set GPA_LIBRARY to its path\n",
          dir, GPA_MULTIARCH);
  exit(EXIT_NOT_FOUND);
}

static void set_env(const char *name, const char *value) {
  if (setenv(name, value, 1) != 0) {
    perror("gpa: setenv");
    exit(EXIT_CANNOT_RUN);
  }
}

static int command_run(int argc, char **argv) {
  option_list_t flags = { NULL };
  int i = 2;
  for (; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "--") == 0) {
      i++;
      break;
    }
    if (arg[0] != '-' || arg[1] == '\0') break; /* PROGRAM ("-" is a name too) */
    if (strcmp(arg, "--leaks") == 0) {
      add_option(&flags, "leaks=1");
    } else if (strcmp(arg, "--stats") == 0) {
      add_option(&flags, "stats=1");
    } else if (strcmp(arg, "--exact-stacks") == 0) {
      add_option(&flags, "stacks=exact");
    } else if (flag_is(arg, "--frames")) {
      char *item = concat3("frames=", frames_value(flag_value(argv, argc, &i, "--frames")), "");
      add_option(&flags, item);
      free(item);
    } else if (flag_is(arg, "--log")) {
      const char *file = flag_value(argv, argc, &i, "--log");
      if (file[0] == '\0') usage_error("--log needs a value");
      char *path = absolute(file);
      if (strpbrk(path, ":,") != NULL) usage_error("--log %s: a log path cannot contain ':' or ','", path);
      char *item = concat3("log=", path, "");
      add_option(&flags, item);
      free(item);
      free(path);
    } else if (flag_is(arg, "--options")) {
      add_option(&flags, flag_value(argv, argc, &i, "--options"));
    } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      fputs(usage_text, stdout);
      fputs(run_help_text, stdout);
      return 0;
    } else {
      usage_error("unknown flag '%s'", arg);
    }
  }
  if (i >= argc) usage_error("run: no PROGRAM given");

  /* Options already in the environment first, so the flags override them. */
  option_list_t all = { NULL };
  const char *inherited = getenv("GPA_OPTIONS");
  if (inherited != NULL) add_option(&all, inherited);
  if (flags.text != NULL) add_option(&all, flags.text);

  gpa_debug_config_t cfg;
  char path[PATH_MAX];
  char err[512];
  if (!debug_options_parse(all.text, &cfg, path, sizeof path, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    return EXIT_USAGE;
  }

  char *library = find_library();
  if (strpbrk(library, " :\t") != NULL) {
    /* ld.so splits LD_PRELOAD at blanks and colons, with no quoting. */
    fprintf(stderr, "gpa: %s: cannot be preloaded: its path contains a blank or ':'\n", library);
    return EXIT_NOT_FOUND;
  }
  const char *preload = getenv("LD_PRELOAD");
  char *new_preload =
      preload != NULL && preload[0] != '\0' ? concat3(library, " ", preload) : checked(strdup(library));
  set_env("LD_PRELOAD", new_preload);
  if (all.text != NULL) set_env("GPA_OPTIONS", all.text);

  execvp(argv[i], argv + i);
  int error = errno;
  fprintf(stderr, "gpa: %s: %s\n", argv[i], strerror(error));
  return error == ENOENT || error == ENOTDIR ? EXIT_NOT_FOUND : EXIT_CANNOT_RUN;
}

int main(int argc, char **argv) {
  if (argc < 2) usage_error("no command given");
  const char *command = argv[1];
  if (strcmp(command, "run") == 0) return command_run(argc, argv);
  if (strcmp(command, "options") == 0 || strcmp(command, "--help-options") == 0) {
    fflush(stdout);
    debug_options_print_help(STDOUT_FILENO);
    return 0;
  }
  if (strcmp(command, "--version") == 0 || strcmp(command, "version") == 0) {
    printf("gpa %s\n", GPA_VERSION_TEXT);
    return 0;
  }
  if (strcmp(command, "help") == 0 || strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0) {
    fputs(usage_text, stdout);
    fputs(run_help_text, stdout);
    return 0;
  }
  usage_error("unknown command '%s'", command);
}
