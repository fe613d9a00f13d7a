#include "core/stop.h"

#include <signal.h>
#include <stddef.h>
#include <time.h>

static sigset_t stop_signals;
static volatile sig_atomic_t stop_received_signal = 0;

void stop_catch_signals(int extra_signal) {
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    if (extra_signal > 0) sigaddset(&stop_signals, extra_signal);
    /* threads started from here on (MPI, OpenMP, CUDA) inherit the mask */
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
}

int stop_requested(void) {
    if (!stop_received_signal) {
        const struct timespec now = {0, 0};
        const int pending = sigtimedwait(&stop_signals, NULL, &now); /* -1: none pending */
        if (pending > 0) stop_received_signal = pending;
    }
    return stop_received_signal != 0;
}

int stop_signal(void) { return (int)stop_received_signal; }
void stop_request(void) { stop_received_signal = -1; }
