/* Logging: by default only rank 0 of the job prints info lines; warnings and errors
 * print on every rank, prefixed with the rank and host so a user can tell who failed. */
#ifndef BNECK_CORE_LOG_H
#define BNECK_CORE_LOG_H

void log_set_rank(int rank, const char *host);
int log_rank(void);
/* Whether log_set_rank has been called (before it, every process says rank 0). */
int log_rank_is_set(void);
void log_info(const char *format, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *format, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *format, ...) __attribute__((format(printf, 1, 2)));
/* An internal failure (BNECK_FAIL), said the same way: one line, the rank and host. */
void log_fatal(const char *format, ...) __attribute__((format(printf, 1, 2)));

#endif
