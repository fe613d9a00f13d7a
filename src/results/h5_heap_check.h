/* A walk of a file's HDF5 global heap collections, before text is read from them: see
 * h5_heap_check.c. */
#ifndef BNECK_RESULTS_H5_HEAP_CHECK_H
#define BNECK_RESULTS_H5_HEAP_CHECK_H

#include <hdf5.h>

#include "results/h5_util.h"

/* 0 when every global heap collection in site->path (open as `file`) walks cleanly as
 * libhdf5 will walk it; otherwise -1, with the collection's byte offset and what is wrong
 * in site->err ("<path>: damaged: ..."). */
int h5_global_heaps_check(const h5_site *site, hid_t file);

#endif
