/* Choosing the backend for [run] device and applying the GPU settings: bad names are errors
 * that name the key, a fall-back to the CPU says why, and GPU-only settings on the CPU
 * get a note naming each one instead of being dropped silently. */
#include <criterion/criterion.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/backend_select.h"

Test(backend_select, cpu_is_taken_as_asked_without_a_note) {
    char note[640] = "stale";
    bneck_error err = {0};
    cr_assert_eq(backend_select("cpu", 0, note, sizeof note, &err), &cpu_backend);
    cr_expect_str_empty(note);
}

Test(backend_select, unknown_device_is_an_error_naming_the_key) {
    char note[640];
    bneck_error err = {0};
    cr_assert_null(backend_select("tpu", 0, note, sizeof note, &err));
    cr_expect(strstr(err.message, "device") && strstr(err.message, "auto, cpu or cuda") &&
                  strstr(err.message, "'tpu'"),
              "%s", err.message);
}

/* auto lands on the GPU when one works; on the CPU it must say why. */
Test(backend_select, auto_says_why_when_it_falls_back_to_the_cpu) {
    char note[640];
    bneck_error err = {0};
    const backend_ops *backend = backend_select("auto", 0, note, sizeof note, &err);
    cr_assert_not_null(backend, "%s", err.message);
    if (backend == &cpu_backend)
        cr_expect(strstr(note, "running on the CPU") != NULL, "note: '%s'", note);
    else
        cr_expect_str_empty(note);
    backend_shutdown(backend);
}

Test(backend_select, cpu_defaults_need_no_note) {
    char note[256] = "stale";
    bneck_error err = {0};
    cr_assert_eq(backend_configure(&cpu_backend, "fp32", "auto", 0, "auto", note, sizeof note,
                                   &err),
                 0);
    cr_expect_str_empty(note);
    cr_assert_eq(backend_configure(&cpu_backend, "fp32", "auto", 1, "off", note, sizeof note,
                                   &err),
                 0);
    cr_expect_str_empty(note, "the CPU is deterministic anyway: '%s'", note);
}

Test(backend_select, every_gpu_only_setting_on_the_cpu_is_named_in_the_note) {
    char note[256];
    bneck_error err = {0};
    cr_assert_eq(backend_configure(&cpu_backend, "bf16", "gemm", 0, "on", note, sizeof note,
                                   &err),
                 0);
    cr_expect(strstr(note, "precision bf16, conv gemm, graph on") != NULL, "note: '%s'", note);
    cr_assert_eq(backend_configure(&cpu_backend, "tf32", "auto", 0, NULL, note, sizeof note,
                                   &err),
                 0);
    cr_expect(strstr(note, ": precision tf32") != NULL && !strstr(note, "conv") &&
                  !strstr(note, "graph"),
              "note: '%s'", note);
}

Test(backend_select, bad_gpu_setting_names_are_errors_on_the_cpu_too) {
    char note[256];
    bneck_error err = {0};
    cr_expect_eq(backend_configure(&cpu_backend, "fp16", "auto", 0, "auto", note, sizeof note,
                                   &err),
                 -1);
    cr_expect(strstr(err.message, "precision") && strstr(err.message, "'fp16'"), "%s",
              err.message);
    cr_expect_eq(backend_configure(&cpu_backend, "fp32", "winograd", 0, "auto", note,
                                   sizeof note, &err),
                 -1);
    cr_expect(strstr(err.message, "conv") && strstr(err.message, "'winograd'"), "%s",
              err.message);
}

/* What /runs and the rank map name: the CPU as "cpu"; a GPU by its name, and in the rank's
 * label with the ordinal this process uses. */
Test(backend_select, cpu_device_names_say_cpu) {
    char model[64] = "stale", label[64] = "stale";
    backend_device_names(&cpu_backend, model, sizeof model, label, sizeof label);
    cr_expect_str_eq(model, "cpu");
    cr_expect_str_eq(label, "cpu");
}

Test(backend_select, gpu_device_names_say_which_gpu) {
    char note[640], model[64] = "stale", label[64] = "stale";
    bneck_error err = {0};
    const backend_ops *backend = backend_select("auto", 0, note, sizeof note, &err);
    cr_assert_not_null(backend, "%s", err.message);
    if (backend == &cpu_backend) cr_skip("no GPU here: %s", note);
    backend_device_names(backend, model, sizeof model, label, sizeof label);
    cr_expect(model[0] != '\0' && strcmp(model, "cpu") != 0, "model: '%s'", model);
    cr_expect(!strncmp(label, "cuda:0 ", 7) && !strcmp(label + 7, model), "label: '%s'", label);
    backend_shutdown(backend);
}
