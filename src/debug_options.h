/*
 * debug_options.h: GPA_OPTIONS, the debug layer's switch for programs that
 * use malloc: "name=value" pairs separated by ':' (or ','), read from the
 * environment at start-up without allocating.
 */
#ifndef GPA_DEBUG_OPTIONS_H
#define GPA_DEBUG_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "gpa.h"

/* The value of GPA_OPTIONS in the process's environment, or NULL: read
 * from `environ` when the C library has set it up, else from the initial
 * environment the kernel keeps in /proc/self/environ (copied into a static
 * buffer, which the next call overwrites; a value too long for it keeps
 * only its whole items). */
const char *debug_options_text(void);

/* Parse `text` (NULL: empty) into *cfg, which starts from the defaults
 * below; items are separated by ':' or ',', later ones win, and a preset
 * (debug=1) applies where it stands.  A value that names a file (log=) is
 * copied into path_buf (path_cap bytes) and cfg->log_path points there.
 * On an unknown name, a malformed, missing or out-of-range value or a path
 * too long for path_buf, writes one line without a newline into err
 * (err_cap bytes, NUL terminated, cut to fit), e.g. "gpa: GPA_OPTIONS:
 * unknown option 'leak' (did you mean 'leaks'?)", leaves *cfg at the
 * defaults and returns false.  Never allocates.
 *
 * Defaults once any option is given: checks=1, frames=8, leak_exitcode=23,
 * everything else off. */
bool debug_options_parse(const char *text, gpa_debug_config_t *cfg, char *path_buf, size_t path_cap,
                         char *err, size_t err_cap);

/* The option list, one line per option (name=VALUES, default, meaning),
 * from the same table the parser reads; written to `fd` with write(2). */
void debug_options_print_help(int fd);

#endif /* GPA_DEBUG_OPTIONS_H */
