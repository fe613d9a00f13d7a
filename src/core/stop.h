/* Graceful stop on a signal: the handler only sets a flag; the training loop looks at it
 * at step boundaries (where the ranks of a run agree on it) and the sweep checkpoints,
 * commits what is finished and exits with BNECK_EXIT_STOPPED. */
#ifndef BNECK_CORE_STOP_H
#define BNECK_CORE_STOP_H

/* Exit status of a sweep stopped by a signal, resumable by running it again. */
enum { BNECK_EXIT_STOPPED = 3 };

/* Installs the handler for SIGTERM, SIGINT and the extra signal (e.g. SIGUSR2, what
 * slurm/sweep.sh asks Slurm to send before the time limit; 0 for none). */
void stop_install_handlers(int extra_signal);
/* Non-zero once a stop signal arrived (or stop_request was called). */
int stop_requested(void);
/* The signal that asked to stop (0 if none). */
int stop_signal(void);
void stop_request(void);

#endif
