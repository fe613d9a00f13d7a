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
/* What a run computes on, for results files: the kind of device ("cpu", or the GPU's name,
 * "NVIDIA H200") in model, and this process's own device ("cpu", or "cuda:0 NVIDIA H200"
 * with the ordinal it uses) in label. */
void backend_device_names(const backend_ops *backend, char *model, size_t model_capacity,
                          char *label, size_t label_capacity);

#endif
