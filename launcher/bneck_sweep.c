/* bneck-sweep: see src/sweep/sweep.h. */
#include "sweep/sweep.h"

int main(int argc, char **argv) { return sweep_main(argc, argv); }
