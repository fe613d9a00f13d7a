/* bneck-sweep: the whole study (patterns x repeats) over any number of MPI ranks, in
 * run groups of [sweep] ranks_per_run ranks, with per-run atomic commits, resume, and the
 * merged sweep.h5 at the end. */
#ifndef BNECK_SWEEP_SWEEP_H
#define BNECK_SWEEP_SWEEP_H

/* The program's main; returns the exit status (0, 1 error, 2 usage/config,
 * BNECK_EXIT_STOPPED when stopped by a signal and resumable). */
int sweep_main(int argc, char **argv);

#endif
