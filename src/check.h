/*
 * check.h: internal invariant checks.  Compiled in with -DGPA_CHECKED=1
 * (cmake -DGPA_CHECKED=ON); compiled out of release builds entirely.
 */
#ifndef GPA_CHECK_H
#define GPA_CHECK_H

#if defined(GPA_CHECKED) && GPA_CHECKED
void check_failed(const char *name, const char *file, int line) __attribute__((noreturn, cold));
/* GPA_INVARIANT(name, cond): `name` says which invariant broke. */
#define GPA_INVARIANT(name, cond) \
  do { if (!(cond)) check_failed(name, __FILE__, __LINE__); } while (0)
#define GPA_CHECKS_ENABLED 1
#else
#define GPA_INVARIANT(name, cond) do { (void)sizeof(cond); } while (0)
#define GPA_CHECKS_ENABLED 0
#endif

#endif /* GPA_CHECK_H */
