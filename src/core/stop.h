/* Graceful stop on a signal: the training loop asks at step boundaries (where the ranks of
 * a run agree on it) and the sweep checkpoints, commits what is finished and exits with
 * BNECK_EXIT_STOPPED.
 *
 * The stop signals are blocked in every thread and taken by one thread of stop.c
 * (sigwait), never delivered asynchronously: no thread is interrupted inside a library.
 * That thread says at once that the stop is on its way, and quits the process on a second
 * SIGINT (Ctrl-C twice), for a user who will not wait for the next step. With a handler instead, a USR2 arriving at rank 0 of an mpirun corrupted its
 * heap in about one try of three here (Open MPI 4.1 with UCX, oneDNN GEMMs running:
 * "corrupted size vs. prev_size" in free; signalling only the other rank never did). */
#ifndef BNECK_CORE_STOP_H
#define BNECK_CORE_STOP_H

/* Exit status of a sweep stopped by a signal, resumable by running it again. */
enum { BNECK_EXIT_STOPPED = 3 };

/* Blocks SIGTERM, SIGINT and SIGHUP (these two unless ignored at start: a script's
 * `cmd &`, nohup) and the extra signal (e.g. SIGUSR2, what slurm/sweep.sh asks Slurm to
 * send before the time limit; 0 for none) for collection by stop_requested. Call
 * it first in main, before any thread starts (MPI_Init, OpenMP, CUDA): a thread started
 * earlier would keep the signals unblocked, and one sent to it would end the process. */
void stop_catch_signals(int extra_signal);
/* Non-zero once a stop signal arrived (or stop_request was called). */
int stop_requested(void);
/* The signal that asked to stop (0 if none). */
int stop_signal(void);
void stop_request(void);

#endif
