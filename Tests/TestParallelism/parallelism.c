/*
 * Swift Testing starts every test at once unless told a width (SWT_EXPERIMENTAL_MAXIMUM_
 * PARALLELIZATION_WIDTH, read when the run begins): each test's time limit then starts counting
 * while its body still waits for one of the few cooperative threads, held by other tests that
 * block on the simulated board. Under load, tests that never got to run failed with "Time limit
 * was exceeded". With the width set to the number of CPUs, a test's clock starts when it can run.
 *
 * Linked into the test bundle; runs before main. An explicit setting in the environment wins.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((constructor)) static void rproc_tests_limit_parallelism(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    char width[32];
    snprintf(width, sizeof width, "%ld", cpus > 0 ? cpus : 1);
    setenv("SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH", width, 0);
}
