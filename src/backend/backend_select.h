/* Picks the backend for --device auto|cpu|cuda. */
#ifndef BNECK_BACKEND_SELECT_H
#define BNECK_BACKEND_SELECT_H

#include "backend/backend.h"
#include "core/error.h"

/* auto: CUDA when a usable GPU is present, else CPU (and *note says why);
 * cpu: always CPU; cuda: CUDA or an error carrying the driver's own message.
 * device_index selects the GPU (the node-local rank in a sweep). note may be NULL. */
const backend_ops *backend_select(const char *device, int device_index, char *note,
                                  size_t note_capacity, bneck_error *err);
/* Applies the GPU settings of a run: precision fp32 | tf32 | bf16, convolution engine
 * auto | cudnn | gemm, deterministic algorithms (cuda_backend.h). The CPU backend always
 * computes in strict fp32, deterministically, one op at a time: a precision other than
 * fp32, a conv engine other than auto or graph "on" (the trainer's CUDA graphs; graph may
 * be NULL) get a note there, not an error (a run with device auto may land on either).
 * Returns -1 with err for a name that is not one of those. */
int backend_configure(const backend_ops *backend, const char *precision, const char *conv_engine,
                      int deterministic, const char *graph, char *note, size_t note_capacity,
                      bneck_error *err);
/* Releases what backend_select set up (GPU handles). */
void backend_shutdown(const backend_ops *backend);
/* Library versions of the backend, for results files. */
const char *backend_versions(const backend_ops *backend);

#endif
