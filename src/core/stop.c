#include "core/stop.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t stop_received_signal = 0;

static void on_stop_signal(int signal_number) { stop_received_signal = signal_number; }

void stop_install_handlers(int extra_signal) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    if (extra_signal > 0) sigaction(extra_signal, &action, NULL);
}

int stop_requested(void) { return stop_received_signal != 0; }
int stop_signal(void) { return (int)stop_received_signal; }
void stop_request(void) { stop_received_signal = -1; }
