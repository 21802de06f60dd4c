/*
 * debug_options.c: GPA_OPTIONS: finding it in the environment, parsing it
 * into a gpa_debug_config_t, and the one table of options that the parser,
 * its error messages and the option list (`gpa options`) all read.
 *
 * Runs inside malloc, before the heap may exist: nothing here allocates or
 * uses stdio.  Text is built in fixed buffers and written with write(2).
 */
#include "debug_options.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "debug_stack.h"

extern char **environ;

#define OPTIONS_VARIABLE "GPA_OPTIONS"

/* An exit status is the low 8 bits of the value passed to exit (wait(2)). */
#define OPTIONS_MAX_EXIT_STATUS 255

/* The longest GPA_OPTIONS value read from /proc/self/environ: room for a
 * PATH_MAX (4096) log path and every other option several times over. */
#define OPTIONS_TEXT_MAX 8192

/* Bytes of /proc/self/environ read at a time: a small stack window, since
 * the file is streamed and its size does not matter. */
#define OPTIONS_PROC_WINDOW 512

/* Quoted option text in error messages is cut here so the line stays
 * readable when someone passes something huge. */
#define OPTIONS_QUOTE_MAX 80

/* Names longer than this get no "did you mean"; the longest real name has
 * 10 characters, so such a name is nothing like any of them. */
#define OPTIONS_SUGGEST_NAME_MAX 32

/* A suggestion is offered when the edit distance is at most this, and at
 * most half the length of the longer name: "canary" -> "canaries" (3 of 8)
 * qualifies, "x" -> "log" (3 of 3) does not. */
#define OPTIONS_SUGGEST_DISTANCE_MAX 3

/* Help lines are built here before each write. */
#define OPTIONS_HELP_LINE 256

/* Column where the default value starts in the option list ("name=VALUES"
 * is padded to it), and where the description starts. */
#define OPTIONS_HELP_DEFAULT_COLUMN 28
#define OPTIONS_HELP_TEXT_COLUMN 38

/* Presets nest at most this deep (today none nests at all); a guard
 * against a table mistake recursing forever. */
#define OPTIONS_PRESET_DEPTH_MAX 2

typedef enum option_kind {
  OPTION_BOOL,     /* bool field: 0/1, yes/no, true/false, on/off; a bare name means 1 */
  OPTION_CHOICE,   /* bool field named by one of two words (false word, true word) */
  OPTION_UNSIGNED, /* unsigned field, decimal 0..max */
  OPTION_INT,      /* int field, decimal 0..max */
  OPTION_SIZE,     /* size_t field, decimal with optional k/m/g suffix */
  OPTION_PATH,     /* const char * field, copied into the caller's path buffer */
  OPTION_PRESET,   /* a bool that applies a list of other options where it stands */
} option_kind_t;

typedef struct option_spec {
  const char *name;
  option_kind_t kind;
  size_t offset;      /* of the field in gpa_debug_config_t (unused by presets) */
  unsigned max;       /* OPTION_UNSIGNED and OPTION_INT: largest value accepted */
  const char *words[2]; /* OPTION_CHOICE: the word for false, the word for true */
  const char *preset; /* OPTION_PRESET: the options it stands for */
  const char *hint;   /* what the value looks like, as "name=HINT" in messages and the list */
  const char *help;
} option_spec_t;

#define OPTIONS_STRINGIFY_(x) #x
#define OPTIONS_STRINGIFY(x) OPTIONS_STRINGIFY_(x)

#define FIELD(f) offsetof(gpa_debug_config_t, f)

/* The one list of options.  Order is the order of `gpa options`. */
static const option_spec_t option_table[] = {
  { "leaks", OPTION_BOOL, FIELD(leaks), 0, { NULL, NULL }, NULL, "0|1",
    "report blocks still live at exit, with their allocation stacks" },
  { "reachable", OPTION_BOOL, FIELD(show_reachable), 0, { NULL, NULL }, NULL, "0|1",
    "list still-reachable blocks in full, not just count them" },
  { "frames", OPTION_UNSIGNED, FIELD(frames), DEBUG_MAX_FRAMES, { NULL, NULL }, NULL, "N",
    "stack frames recorded per allocation and free (0 to " OPTIONS_STRINGIFY(DEBUG_MAX_FRAMES) "; 0: none)" },
  { "stacks", OPTION_CHOICE, FIELD(exact_stacks), 0, { "fast", "exact" }, NULL, "fast|exact",
    "fast: follow frame pointers; exact: the C library's unwinder (slower)" },
  { "checks", OPTION_BOOL, FIELD(checks), 0, { NULL, NULL }, NULL, "0|1",
    "record each free's stack and check sized frees' sizes (0: faster frees; double and invalid frees "
    "are still reported)" },
  { "canaries", OPTION_BOOL, FIELD(canaries), 0, { NULL, NULL }, NULL, "0|1",
    "guard bytes after every block, verified at free, realloc and exit" },
  { "quarantine", OPTION_SIZE, FIELD(quarantine), 0, { NULL, NULL }, NULL, "SIZE",
    "bytes of freed blocks held back before reuse (0: none)" },
  { "alloc_fill", OPTION_BOOL, FIELD(alloc_fill), 0, { NULL, NULL }, NULL, "0|1",
    "fill new blocks with 0xAA" },
  { "free_fill", OPTION_BOOL, FIELD(free_fill), 0, { NULL, NULL }, NULL, "0|1",
    "fill freed blocks with 0xDD, checked when they leave the quarantine" },
  { "limit", OPTION_SIZE, FIELD(memory_limit), 0, { NULL, NULL }, NULL, "SIZE",
    "live bytes past which allocations fail with ENOMEM (0: no limit)" },
  { "verbose", OPTION_BOOL, FIELD(verbose), 0, { NULL, NULL }, NULL, "0|1",
    "log every allocation and free with its size and caller" },
  { "stats", OPTION_BOOL, FIELD(stats), 0, { NULL, NULL }, NULL, "0|1",
    "print statistics at exit" },
  { "log", OPTION_PATH, FIELD(log_path), 0, { NULL, NULL }, NULL, "PATH",
    "append reports to this file instead of standard error" },
  { "exitcode", OPTION_INT, FIELD(leak_exitcode), OPTIONS_MAX_EXIT_STATUS, { NULL, NULL }, NULL, "N",
    "exit status when the exit report finds leaks (0: keep the program's)" },
  { "on_error", OPTION_CHOICE, FIELD(continue_on_error), 0, { "abort", "continue" }, NULL,
    "abort|continue", "after reporting misuse: abort, or leave the block alone and go on" },
  { "debug", OPTION_PRESET, 0, 0, { NULL, NULL },
    "leaks=1:checks=1:canaries=1:free_fill=1:quarantine=16m", "0|1",
    "1: leaks, checks, canaries, free_fill, quarantine=16m; 0: those back to defaults" },
};

#define OPTION_COUNT (sizeof option_table / sizeof option_table[0])

/* ---- bounded text ------------------------------------------------------ */

/* Text into a fixed buffer, cut (never overrun) when it is full; always NUL
 * terminated when cap > 0. */
typedef struct text_buffer {
  char *buf;
  size_t cap;
  size_t len;
} text_buffer_t;

static void text_init(text_buffer_t *t, char *buf, size_t cap) {
  t->buf = buf;
  t->cap = buf != NULL ? cap : 0;
  t->len = 0;
  if (t->cap != 0) buf[0] = '\0';
}

static void text_mem(text_buffer_t *t, const char *s, size_t n) {
  if (t->cap == 0) return;
  size_t room = t->cap - 1 - t->len;
  if (n > room) n = room;
  memcpy(t->buf + t->len, s, n);
  t->len += n;
  t->buf[t->len] = '\0';
}

static void text_str(text_buffer_t *t, const char *s) { text_mem(t, s, strlen(s)); }

static void text_dec(text_buffer_t *t, uint64_t v) {
  char digits[24];
  size_t i = sizeof digits;
  do {
    digits[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  text_mem(t, digits + i, sizeof digits - i);
}

/* At least one blank, so a long name never runs into the next column. */
static void text_pad_to(text_buffer_t *t, size_t column) {
  text_mem(t, " ", 1);
  while (t->len < column && t->len + 1 < t->cap) text_mem(t, " ", 1);
}

/* The user's text, shortened and with control bytes shown as '?', so the
 * message stays one printable line. */
static void text_quoted(text_buffer_t *t, const char *s, size_t n) {
  size_t shown = n > OPTIONS_QUOTE_MAX ? OPTIONS_QUOTE_MAX : n;
  for (size_t i = 0; i < shown; i++) {
    unsigned char c = (unsigned char)s[i];
    char out = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    text_mem(t, &out, 1);
  }
  if (shown < n) text_str(t, "...");
}

/* ---- parsing ------------------------------------------------------------- */

typedef struct parse_state {
  gpa_debug_config_t cfg;
  char *path_buf;
  size_t path_cap;
  text_buffer_t err;
} parse_state_t;

static void set_defaults(gpa_debug_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->checks = true;
  cfg->frames = 8;
  cfg->leak_exitcode = 23;
}

static char lower_ascii(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

static bool equals_word(const char *s, size_t n, const char *word) {
  if (strlen(word) != n) return false;
  for (size_t i = 0; i < n; i++)
    if (lower_ascii(s[i]) != word[i]) return false;
  return true;
}

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

static const option_spec_t *find_option(const char *name, size_t n) {
  for (size_t i = 0; i < OPTION_COUNT; i++)
    if (strlen(option_table[i].name) == n && memcmp(option_table[i].name, name, n) == 0)
      return &option_table[i];
  return NULL;
}

static size_t min3(size_t a, size_t b, size_t c) {
  size_t m = a < b ? a : b;
  return m < c ? m : c;
}

/* Edit distance counting insertions, deletions, substitutions and swaps of
 * neighbours ("laeks"), case-blind; a <= OPTIONS_SUGGEST_NAME_MAX. */
static size_t edit_distance(const char *a, size_t an, const char *b) {
  size_t bn = strlen(b);
  size_t rows[3][OPTIONS_SUGGEST_NAME_MAX + 1];
  size_t *before = rows[0], *prev = rows[1], *cur = rows[2];
  if (bn > OPTIONS_SUGGEST_NAME_MAX) return SIZE_MAX;
  for (size_t j = 0; j <= bn; j++) prev[j] = j;
  for (size_t i = 1; i <= an; i++) {
    cur[0] = i;
    for (size_t j = 1; j <= bn; j++) {
      size_t cost = lower_ascii(a[i - 1]) == lower_ascii(b[j - 1]) ? 0 : 1;
      cur[j] = min3(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
      if (i > 1 && j > 1 && lower_ascii(a[i - 1]) == lower_ascii(b[j - 2]) &&
          lower_ascii(a[i - 2]) == lower_ascii(b[j - 1]) && before[j - 2] + 1 < cur[j])
        cur[j] = before[j - 2] + 1;
    }
    size_t *spare = before;
    before = prev;
    prev = cur;
    cur = spare;
  }
  return prev[bn];
}

static const option_spec_t *closest_option(const char *name, size_t n) {
  if (n == 0 || n > OPTIONS_SUGGEST_NAME_MAX) return NULL;
  const option_spec_t *best = NULL;
  size_t best_distance = SIZE_MAX;
  for (size_t i = 0; i < OPTION_COUNT; i++) {
    size_t d = edit_distance(name, n, option_table[i].name);
    size_t longer = n > strlen(option_table[i].name) ? n : strlen(option_table[i].name);
    if (d <= OPTIONS_SUGGEST_DISTANCE_MAX && 2 * d <= longer && d < best_distance) {
      best = &option_table[i];
      best_distance = d;
    }
  }
  return best;
}

static void error_start(parse_state_t *st) {
  text_init(&st->err, st->err.buf, st->err.cap);
  text_str(&st->err, "gpa: " OPTIONS_VARIABLE ": ");
}

static bool fail_unknown(parse_state_t *st, const char *name, size_t n) {
  error_start(st);
  text_str(&st->err, "unknown option '");
  text_quoted(&st->err, name, n);
  text_str(&st->err, "'");
  const option_spec_t *guess = closest_option(name, n);
  if (guess != NULL) {
    text_str(&st->err, " (did you mean '");
    text_str(&st->err, guess->name);
    text_str(&st->err, "'?)");
  }
  return false;
}

static bool fail_needs_value(parse_state_t *st, const option_spec_t *opt) {
  error_start(st);
  text_str(&st->err, opt->name);
  text_str(&st->err, ": needs a value (");
  text_str(&st->err, opt->name);
  text_str(&st->err, "=");
  text_str(&st->err, opt->hint);
  text_str(&st->err, ")");
  return false;
}

/* "name=value: " then the caller says what was wrong. */
static void error_about_value(parse_state_t *st, const option_spec_t *opt, const char *value, size_t n) {
  error_start(st);
  text_str(&st->err, opt->name);
  text_str(&st->err, "=");
  text_quoted(&st->err, value, n);
  text_str(&st->err, ": ");
}

static bool parse_bool_word(const char *s, size_t n, bool *out) {
  static const char *const true_words[] = { "1", "yes", "true", "on" };
  static const char *const false_words[] = { "0", "no", "false", "off" };
  for (size_t i = 0; i < sizeof true_words / sizeof true_words[0]; i++) {
    if (equals_word(s, n, true_words[i])) {
      *out = true;
      return true;
    }
    if (equals_word(s, n, false_words[i])) {
      *out = false;
      return true;
    }
  }
  return false;
}

/* Decimal digits only (no sign, no blanks); false on anything else or on
 * overflow of 64 bits. */
static bool parse_decimal(const char *s, size_t n, uint64_t *out) {
  if (n == 0) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    unsigned digit = (unsigned)(s[i] - '0');
    if (v > (UINT64_MAX - digit) / 10) return false;
    v = v * 10 + digit;
  }
  *out = v;
  return true;
}

typedef enum size_parse {
  SIZE_OK,
  SIZE_MALFORMED,
  SIZE_TOO_LARGE,
} size_parse_t;

/* A number with an optional k, m or g suffix (either case, powers of 1024). */
static size_parse_t parse_size(const char *s, size_t n, size_t *out) {
  unsigned shift = 0;
  if (n > 0) {
    switch (lower_ascii(s[n - 1])) {
    case 'k': shift = 10; break;
    case 'm': shift = 20; break;
    case 'g': shift = 30; break;
    default: break;
    }
    if (shift != 0) n--;
  }
  if (n == 0) return SIZE_MALFORMED;
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9') return SIZE_MALFORMED;
  uint64_t v;
  if (!parse_decimal(s, n, &v)) return SIZE_TOO_LARGE; /* digits only, so it overflowed */
  if (v > (uint64_t)(SIZE_MAX >> shift)) return SIZE_TOO_LARGE;
  *out = (size_t)(v << shift);
  return SIZE_OK;
}

static void *field_of(gpa_debug_config_t *cfg, const option_spec_t *opt) {
  return (char *)cfg + opt->offset;
}

static bool parse_text(parse_state_t *st, const char *text, size_t len, unsigned depth);

/* debug=0: every option the preset names goes back to its default. */
static void undo_preset(parse_state_t *st, const option_spec_t *preset) {
  gpa_debug_config_t defaults;
  set_defaults(&defaults);
  const char *p = preset->preset;
  while (*p != '\0') {
    size_t n = strcspn(p, "=:,");
    const option_spec_t *opt = find_option(p, n);
    if (opt != NULL && opt->kind != OPTION_PRESET) {
      switch (opt->kind) {
      case OPTION_BOOL:
      case OPTION_CHOICE: *(bool *)field_of(&st->cfg, opt) = *(bool *)field_of(&defaults, opt); break;
      case OPTION_UNSIGNED:
        *(unsigned *)field_of(&st->cfg, opt) = *(unsigned *)field_of(&defaults, opt);
        break;
      case OPTION_INT: *(int *)field_of(&st->cfg, opt) = *(int *)field_of(&defaults, opt); break;
      case OPTION_SIZE: *(size_t *)field_of(&st->cfg, opt) = *(size_t *)field_of(&defaults, opt); break;
      case OPTION_PATH:
        *(const char **)field_of(&st->cfg, opt) = *(const char **)field_of(&defaults, opt);
        break;
      case OPTION_PRESET: break;
      }
    }
    p += strcspn(p, ":,");
    if (*p != '\0') p++;
  }
}

static bool apply_value(parse_state_t *st, const option_spec_t *opt, const char *value, size_t n,
                        unsigned depth) {
  switch (opt->kind) {
  case OPTION_BOOL:
  case OPTION_PRESET: {
    bool on;
    if (!parse_bool_word(value, n, &on)) {
      error_about_value(st, opt, value, n);
      text_str(&st->err, "expected 0 or 1 (or yes/no, true/false, on/off)");
      return false;
    }
    if (opt->kind == OPTION_BOOL) {
      *(bool *)field_of(&st->cfg, opt) = on;
      return true;
    }
    if (!on) {
      undo_preset(st, opt);
      return true;
    }
    return parse_text(st, opt->preset, strlen(opt->preset), depth + 1);
  }
  case OPTION_CHOICE:
    for (unsigned i = 0; i < 2; i++) {
      if (equals_word(value, n, opt->words[i])) {
        *(bool *)field_of(&st->cfg, opt) = i == 1;
        return true;
      }
    }
    error_about_value(st, opt, value, n);
    text_str(&st->err, "expected ");
    text_str(&st->err, opt->words[0]);
    text_str(&st->err, " or ");
    text_str(&st->err, opt->words[1]);
    return false;
  case OPTION_UNSIGNED:
  case OPTION_INT: {
    uint64_t v;
    if (!parse_decimal(value, n, &v) || v > opt->max) {
      error_about_value(st, opt, value, n);
      text_str(&st->err, "expected a number from 0 to ");
      text_dec(&st->err, opt->max);
      return false;
    }
    if (opt->kind == OPTION_UNSIGNED)
      *(unsigned *)field_of(&st->cfg, opt) = (unsigned)v;
    else
      *(int *)field_of(&st->cfg, opt) = (int)v;
    return true;
  }
  case OPTION_SIZE: {
    size_t v = 0;
    size_parse_t r = parse_size(value, n, &v);
    if (r != SIZE_OK) {
      error_about_value(st, opt, value, n);
      if (r == SIZE_MALFORMED) {
        text_str(&st->err, "expected a size: a number with an optional k, m or g suffix");
      } else {
        text_str(&st->err, "too large for a size");
      }
      return false;
    }
    *(size_t *)field_of(&st->cfg, opt) = v;
    return true;
  }
  case OPTION_PATH:
    if (st->path_buf == NULL || n >= st->path_cap) {
      error_start(st);
      text_str(&st->err, opt->name);
      text_str(&st->err, ": path too long (at most ");
      text_dec(&st->err, st->path_buf == NULL || st->path_cap == 0 ? 0 : st->path_cap - 1);
      text_str(&st->err, " bytes)");
      return false;
    }
    memcpy(st->path_buf, value, n);
    st->path_buf[n] = '\0';
    *(const char **)field_of(&st->cfg, opt) = st->path_buf;
    return true;
  }
  return false;
}

/* One "name=value" item; blanks around the name and the value are ignored. */
static bool parse_item(parse_state_t *st, const char *item, size_t n, unsigned depth) {
  while (n > 0 && is_blank(item[0])) {
    item++;
    n--;
  }
  while (n > 0 && is_blank(item[n - 1])) n--;
  if (n == 0) return true;

  const char *eq = memchr(item, '=', n);
  size_t name_len = eq != NULL ? (size_t)(eq - item) : n;
  while (name_len > 0 && is_blank(item[name_len - 1])) name_len--;
  const option_spec_t *opt = find_option(item, name_len);
  if (opt == NULL) return fail_unknown(st, item, name_len);

  if (eq == NULL) {
    if (opt->kind == OPTION_BOOL || opt->kind == OPTION_PRESET) return apply_value(st, opt, "1", 1, depth);
    return fail_needs_value(st, opt);
  }
  const char *value = eq + 1;
  size_t value_len = n - (size_t)(value - item);
  while (value_len > 0 && is_blank(value[0])) {
    value++;
    value_len--;
  }
  if (value_len == 0) return fail_needs_value(st, opt);
  return apply_value(st, opt, value, value_len, depth);
}

static bool parse_text(parse_state_t *st, const char *text, size_t len, unsigned depth) {
  if (depth > OPTIONS_PRESET_DEPTH_MAX) return true;
  size_t start = 0;
  while (start <= len) {
    size_t end = start;
    while (end < len && text[end] != ':' && text[end] != ',') end++;
    if (!parse_item(st, text + start, end - start, depth)) return false;
    start = end + 1;
  }
  return true;
}

bool debug_options_parse(const char *text, gpa_debug_config_t *cfg, char *path_buf, size_t path_cap,
                         char *err, size_t err_cap) {
  parse_state_t st;
  set_defaults(&st.cfg);
  st.path_buf = path_buf;
  st.path_cap = path_buf != NULL ? path_cap : 0;
  text_init(&st.err, err, err_cap);
  bool ok = text == NULL || parse_text(&st, text, strlen(text), 0);
  if (ok) {
    *cfg = st.cfg;
  } else {
    set_defaults(cfg);
  }
  return ok;
}

/* ---- the environment ----------------------------------------------------- */

static char options_text_buffer[OPTIONS_TEXT_MAX];

static const char *options_from_environ(void) {
  size_t prefix = strlen(OPTIONS_VARIABLE);
  for (char **e = environ; *e != NULL; e++)
    if (strncmp(*e, OPTIONS_VARIABLE, prefix) == 0 && (*e)[prefix] == '=') return *e + prefix + 1;
  return NULL;
}

/* A value cut at the buffer's end keeps only whole items, so a long log
 * path is never turned into a different, shorter one. */
static void drop_partial_item(char *buf, size_t *len) {
  while (*len > 0 && buf[*len - 1] != ':' && buf[*len - 1] != ',') (*len)--;
}

/* Before the C library has set up `environ`: the environment the process
 * started with, as the kernel keeps it (NUL-separated "NAME=value"),
 * streamed through a small window so its size does not matter. */
static const char *options_from_proc(void) {
  static const char wanted[] = OPTIONS_VARIABLE "=";
  const size_t wanted_len = sizeof wanted - 1;
  int saved_errno = errno; /* called from inside malloc: the program's errno is not ours to change */
  int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
  while (fd < 0 && errno == EINTR) fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    errno = saved_errno;
    return NULL;
  }

  char window[OPTIONS_PROC_WINDOW];
  size_t matched = 0;      /* bytes of `wanted` matched at the start of this entry */
  bool at_entry = true;    /* still possibly matching the current entry's start */
  bool found = false, done = false, cut = false;
  size_t len = 0;
  while (!done) {
    ssize_t got = read(fd, window, sizeof window);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    for (ssize_t i = 0; i < got && !done; i++) {
      char c = window[i];
      if (found) {
        if (c == '\0') {
          done = true;
        } else if (len < sizeof options_text_buffer - 1) {
          options_text_buffer[len++] = c;
        } else {
          cut = done = true;
        }
      } else if (c == '\0') {
        matched = 0;
        at_entry = true;
      } else if (at_entry) {
        if (c == wanted[matched]) {
          if (++matched == wanted_len) found = true;
        } else {
          at_entry = false;
        }
      }
    }
  }
  close(fd);
  errno = saved_errno;
  if (!found) return NULL;
  if (cut) drop_partial_item(options_text_buffer, &len);
  options_text_buffer[len] = '\0';
  return options_text_buffer;
}

const char *debug_options_text(void) {
  if (environ != NULL) return options_from_environ();
  return options_from_proc();
}

/* ---- the option list ----------------------------------------------------- */

static void write_all(int fd, const char *s, size_t n) {
  while (n > 0) {
    ssize_t done = write(fd, s, n);
    if (done < 0 && errno == EINTR) continue;
    if (done <= 0) return;
    s += done;
    n -= (size_t)done;
  }
}

static void write_line(int fd, text_buffer_t *t) {
  text_mem(t, "\n", 1);
  write_all(fd, t->buf, t->len);
}

static void text_default(text_buffer_t *t, const option_spec_t *opt, gpa_debug_config_t *defaults) {
  switch (opt->kind) {
  case OPTION_BOOL: text_dec(t, *(bool *)field_of(defaults, opt) ? 1 : 0); break;
  case OPTION_CHOICE: text_str(t, opt->words[*(bool *)field_of(defaults, opt) ? 1 : 0]); break;
  case OPTION_UNSIGNED: text_dec(t, *(unsigned *)field_of(defaults, opt)); break;
  case OPTION_INT: text_dec(t, (uint64_t)*(int *)field_of(defaults, opt)); break;
  case OPTION_SIZE: text_dec(t, *(size_t *)field_of(defaults, opt)); break;
  case OPTION_PATH: {
    const char *path = *(const char **)field_of(defaults, opt);
    text_str(t, path != NULL ? path : "stderr");
    break;
  }
  case OPTION_PRESET: text_str(t, "0"); break;
  }
}

void debug_options_print_help(int fd) {
  static const char *const intro[] = {
    OPTIONS_VARIABLE ": name=value items separated by ':' or ','; later items win.",
    "A bare boolean name means name=1.  SIZE: bytes, or a number with k, m or g (KiB, MiB, GiB).",
    "A log PATH cannot contain ':' or ','.",
    "",
  };
  char line[OPTIONS_HELP_LINE];
  text_buffer_t t;
  for (size_t i = 0; i < sizeof intro / sizeof intro[0]; i++) {
    text_init(&t, line, sizeof line);
    text_str(&t, intro[i]);
    write_line(fd, &t);
  }
  text_init(&t, line, sizeof line);
  text_str(&t, "  option");
  text_pad_to(&t, OPTIONS_HELP_DEFAULT_COLUMN);
  text_str(&t, "default");
  text_pad_to(&t, OPTIONS_HELP_TEXT_COLUMN);
  text_str(&t, "meaning");
  write_line(fd, &t);

  gpa_debug_config_t defaults;
  set_defaults(&defaults);
  for (size_t i = 0; i < OPTION_COUNT; i++) {
    const option_spec_t *opt = &option_table[i];
    text_init(&t, line, sizeof line);
    text_str(&t, "  ");
    text_str(&t, opt->name);
    text_str(&t, "=");
    text_str(&t, opt->hint);
    text_pad_to(&t, OPTIONS_HELP_DEFAULT_COLUMN);
    text_default(&t, opt, &defaults);
    text_pad_to(&t, OPTIONS_HELP_TEXT_COLUMN);
    text_str(&t, opt->help);
    write_line(fd, &t);
  }
}
