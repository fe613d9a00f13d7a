#!/usr/bin/env python3
"""Mutates a config file and reports every case that crashes bneck-sweep's reading of it.

Each case flips bytes in, inserts tokens into ([, =, NUL, a 5,000-character value, 1e309,
nan, -1, ...) or cuts spans out of the config, then runs `bneck-sweep CONFIG --dry-run`
(which parses and checks the config and plans the sweep, without reading the dataset). A
clean result: every case exits 0 (still a valid config), 1 or 2 (refused with a message);
none ends by a signal, a timeout or a sanitizer report. Use the sanitize build, so that
ASan and UBSan see what a plain build would survive by luck (leak checking stays off, as in
tests/sanitized_sweep.sh: Open MPI's own allocations).

The suite runs 60 cases with seed 1 (fuzz_config_files, in the sanitized build; about
0.4 s a case); run more after changing the config parser or the settings' checks:
    /usr/bin/python3 tests/fuzz/config_files.py build-sanitize configs/sweep-small.ini [cases] [seed]
"""
import os
import random
import shutil
import subprocess
import sys
import tempfile

build = sys.argv[1] if len(sys.argv) > 1 else "build-sanitize"
source = sys.argv[2] if len(sys.argv) > 2 else "configs/sweep-small.ini"
cases = int(sys.argv[3]) if len(sys.argv) > 3 else 100
random.seed(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
sweep = os.path.join(build, "bin", "bneck-sweep")
base = open(source, "rb").read()
tokens = [b"=", b"[", b"]", b"\n", b";", b"#", b":", b",", b" ", b"\t", b"\x00", b"\xff",
          b'"', b"\\", b"-1", b"0", b"99999999999999999999", b"nan", b"inf", b"1e309",
          b"0x10", b"A:0:0", b"Z:9:9", b"[sweep]", b"[run]", b"patterns", b"repeats = 0",
          b"epochs = -5", b"batch = 0", b"lr = inf", b"%s%n", b"a" * 5000]
work = tempfile.mkdtemp(prefix="bneck-config-fuzz.")
config = os.path.join(work, "case.ini")
env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0",
           UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
exits, bad = {}, []
for case in range(cases):
    text = bytearray(base)
    for _ in range(random.choice([1, 2, 4, 8])):
        at = random.randrange(len(text))
        kind = random.random()
        if kind < 0.4:
            text[at] ^= random.randrange(1, 256)
        elif kind < 0.7:
            text[at:at] = random.choice(tokens)
        else:
            del text[at:at + random.randrange(1, 40)]
    open(config, "wb").write(text)
    try:
        done = subprocess.run([sweep, config, "run.output=" + os.path.join(work, "out"),
                               "--dry-run"], capture_output=True, timeout=60, env=env)
        rc, stderr = done.returncode, done.stderr
    except subprocess.TimeoutExpired:
        rc, stderr = "timeout", b""
    exits[rc] = exits.get(rc, 0) + 1
    if rc not in (0, 1, 2) or b"runtime error" in stderr or b"Sanitizer" in stderr:
        kept = os.path.join(work, f"bad-{case}.ini")
        shutil.copy(config, kept)
        bad.append(kept)
        print(f"BAD ({rc}): {kept}\n{stderr[-800:].decode(errors='replace')}", flush=True)
print(f"{source}: {cases} cases, exit codes {dict(sorted(exits.items(), key=str))}")
if bad:
    print(f"{len(bad)} bad cases; kept in {work}")
    sys.exit(1)
shutil.rmtree(work)
print("no crash, no sanitizer report")
