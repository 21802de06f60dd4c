/*
 * gpa_testing.h: the testing allocator as cmocka fixtures.  Include after
 * <cmocka.h>.  Each test gets a fresh general-purpose instance; teardown
 * deinitialises it and fails the test when anything leaked (the leak is
 * also named on stderr: "gpa: <test>: leaked N allocation(s), M byte(s)").
 *
 *   static void test_parse(void **state) {
 *     gpa_allocator_t a = gpa_testing_allocator(state);
 *     ...
 *   }
 *   cmocka_unit_test_setup_teardown(test_parse, gpa_testing_setup, gpa_testing_teardown)
 */
#ifndef GPA_TESTING_H
#define GPA_TESTING_H

#include <stdlib.h>

#include "gpa.h"

static inline int gpa_testing_setup(void **state) {
  gpa_t *gpa = (gpa_t *)malloc(sizeof *gpa);
  if (gpa == NULL || gpa_testing_init(gpa) != 0) {
    free(gpa);
    return -1;
  }
  *state = gpa;
  return 0;
}

/* Fails the test (cmocka reports the teardown as failed) on a leak. */
static inline int gpa_testing_teardown(void **state) {
  gpa_t *gpa = (gpa_t *)*state;
  bool clean = gpa_testing_check(gpa, "test");
  free(gpa);
  *state = NULL;
  if (!clean) fail_msg("the test leaked memory through its testing allocator");
  return 0;
}

/* The allocator of the test's instance. */
static inline gpa_allocator_t gpa_testing_allocator(void **state) { return gpa_allocator((gpa_t *)*state); }

#endif /* GPA_TESTING_H */
