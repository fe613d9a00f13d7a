#include "core/stop.h"

#include "core/log.h"

#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static sigset_t stop_signals;
static atomic_int stop_received_signal; /* 0, the first stop signal, or -1 (stop_request) */
static bool watcher_running;

/* One write per line, as log.c does: under mpirun a line must not be split by another's. */
static void say(const char *text) {
    ssize_t ignored = write(STDERR_FILENO, text, strlen(text));
    (void)ignored;
}

static const char *signal_name(int signal_number) {
    switch (signal_number) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    case SIGUSR1: return "SIGUSR1";
    case SIGUSR2: return "SIGUSR2";
    default: return strsignal(signal_number);
    }
}

/* The one thread that takes the stop signals: the first asks for a clean stop; a second
 * interrupt (Ctrl-C pressed again) quits at once, losing only the epoch in progress, since
 * every commit is a rename. A repeated TERM does not: a scheduler may send it to every
 * process of a job as well as to the script that passes it on. */
static void *watch_stop_signals(void *unused) {
    (void)unused;
    int interrupts = 0;
    for (;;) {
        int signal_number = 0;
        if (sigwait(&stop_signals, &signal_number) != 0) continue;
        if (signal_number == SIGINT && ++interrupts >= 2) {
            say("bneck: interrupted again: quitting now (committed epochs are kept; the one in "
                "progress is lost)\n");
            _exit(128 + SIGINT);
        }
        int none = 0;
        const int first = atomic_compare_exchange_strong(&stop_received_signal, &none, signal_number);
        if (!first && signal_number != SIGINT) continue; /* a repeated TERM, say: on its way */
        char rank[32] = "";
        if (log_rank_is_set()) snprintf(rank, sizeof rank, " (rank %d)", log_rank());
        char note[240];
        snprintf(note, sizeof note, "bneck%s: %s received: %s at the next step, keeping the work "
                 "done%s\n", rank, signal_name(signal_number), first ? "stopping" : "already stopping",
                 signal_number == SIGINT ? " (interrupt again to quit at once)" : "");
        say(note);
    }
    return NULL;
}

static bool signal_ignored(int signal_number) {
    struct sigaction action;
    return sigaction(signal_number, NULL, &action) == 0 && action.sa_handler == SIG_IGN;
}

void stop_catch_signals(int extra_signal) {
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    /* Ctrl-C, and a closed terminal or ssh session; each only where it is not ignored
     * already: a script's `cmd &` ignores SIGINT so that Ctrl-C spares its background
     * jobs, nohup ignores SIGHUP (a blocked signal is queued even when ignored, so sigwait
     * would take it all the same) */
    if (!signal_ignored(SIGINT)) sigaddset(&stop_signals, SIGINT);
    if (!signal_ignored(SIGHUP)) sigaddset(&stop_signals, SIGHUP);
    if (extra_signal > 0) sigaddset(&stop_signals, extra_signal);
    /* threads started from here on (MPI, OpenMP, CUDA, the watcher) inherit the mask */
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    /* output into a pipe whose reader is gone (`| tee log` when the terminal closes) is
     * lost, not a reason to die before the stop is made */
    signal(SIGPIPE, SIG_IGN);
    pthread_t watcher;
    pthread_attr_t detached;
    pthread_attr_init(&detached);
    pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
    watcher_running = pthread_create(&watcher, &detached, watch_stop_signals, NULL) == 0;
    if (!watcher_running)
        say("bneck: warning: cannot start the thread that takes stop signals: they will be "
            "taken at step boundaries only, and a second interrupt will not quit at once\n");
    pthread_attr_destroy(&detached);
}

int stop_requested(void) {
    if (!watcher_running && !atomic_load(&stop_received_signal)) {
        /* without the watcher thread (it could not start), collect them here */
        const struct timespec now = {0, 0};
        const int pending = sigtimedwait(&stop_signals, NULL, &now); /* -1: none pending */
        if (pending > 0) {
            int none = 0;
            atomic_compare_exchange_strong(&stop_received_signal, &none, pending);
        }
    }
    return atomic_load(&stop_received_signal) != 0;
}

int stop_signal(void) { return atomic_load(&stop_received_signal); }
void stop_request(void) { atomic_store(&stop_received_signal, -1); }
