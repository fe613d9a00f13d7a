#!/usr/bin/env python3
"""Flips bytes in the files a sweep reads back and reports every crash.

Makes a tiny sweep (patterns A and E, 2 repeats, 2 epochs of 256 Fashion-MNIST images),
then, case by case, flips bytes in one run file and runs `bneck-sweep --dry-run` over
the output (the resume's reading of every run file), and flips bytes in sweep.h5 and
runs bneck-report on it; both also as an older bneck wrote them (without
/text_attributes, whose text is read from the heap, walked first). Then it stops a sweep
of E part-way through its second epoch (SIGTERM after the first), and case by case flips
bytes in that run file and resumes the sweep for real (the checkpoint read and trained
on). A clean result: no case ends by a signal or a timeout, and damaged files are read
right or refused as they should be: a dry run exits 0 (the run shown as "redo:
unreadable"), bneck-report exits 0 or 1 (refused), a resume exits 0 (the run resumed, or
its file moved aside and the run trained anew; before /text_attributes, a damaged heap
string could read as other settings and refuse the whole directory, exit 2).
Half the flips in each kind go inside HDF5's global heap collections ("GCOL"), where
variable-length strings live without a checksum.

The suite runs 16 cases with seed 1 (fuzz_results_files, about 80 s); run more after
changing how results files are written or read (about a minute per 15 cases):
    /usr/bin/python3 tests/fuzz/results_files.py build [cases] [seed]
(build-sanitize instead of build: ASan and UBSan reports count as crashes too).
"""
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import h5py

build = sys.argv[1] if len(sys.argv) > 1 else "build"
cases = int(sys.argv[2]) if len(sys.argv) > 2 else 100
random.seed(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
sweep = os.path.join(build, "bin", "bneck-sweep")
report = os.path.join(build, "bin", "bneck-report")
work = tempfile.mkdtemp(prefix="bneck-fuzz.")
config = os.path.join(work, "tiny.ini")
with open(config, "w") as f:
    f.write("[run]\nname = tiny\nseed = 5\ndevice = cpu\nthreads = 1\n"
            "[data]\ndataset = fashion-mnist\ntrain_limit = 256\nval_limit = 200\n"
            "[train]\nepochs = 2\nbatch = 64\nval_batch = 100\n"
            "[sweep]\npatterns = A:1:1, E:3:4\nrepeats = 2\n")
good = os.path.join(work, "good")
made = subprocess.run([sweep, config, "run.output=" + good], capture_output=True,
                      env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
if made.returncode != 0:
    sys.exit(f"the sweep to fuzz the files of exited {made.returncode}:\n"
             + made.stderr.decode(errors="replace")[-2000:])


def heap_collections(data):
    """(offset, size) of each global heap collection: "GCOL", version, 3 bytes, size."""
    found = []
    for m in re.finditer(b"GCOL", data):
        size = int.from_bytes(data[m.start() + 8:m.start() + 16], "little")
        if 4096 <= size <= len(data) - m.start():
            found.append((m.start(), size))
    return found


def damaged(data, case):
    b = bytearray(data)
    heaps = heap_collections(data)
    for _ in range(random.choice([1, 2, 4, 8])):
        if case % 2 and heaps:
            start, size = random.choice(heaps)
            at = start + random.randrange(size)
        else:
            at = random.randrange(len(b))
        b[at] ^= random.randrange(1, 256)
    return bytes(b)


# In a sanitize build an ASan or UBSan report ends the program with these codes rather
# than 1, which the programs use for a refused file.
sanitizers = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:exitcode=86",
                  UBSAN_OPTIONS="halt_on_error=1:exitcode=87:print_stacktrace=1")


def run(command):
    try:
        return subprocess.run(command, capture_output=True, timeout=120,
                              env=sanitizers).returncode
    except subprocess.TimeoutExpired:
        return "timeout"


def without_text_copy(path):
    """The file as a bneck older than /text_attributes wrote it: text in the heap only."""
    older = path + ".older.h5"
    shutil.copy(path, older)
    with h5py.File(older, "r+") as f:
        del f["text_attributes"]
    data = open(older, "rb").read()
    os.remove(older)
    return data


# exit codes that a damaged file may give, per kind
expected = {"run file": (0,), "older run file": (0,), "sweep.h5": (0, 1),
            "older sweep.h5": (0, 1), "resumed run": (0,)}
outcomes = {kind: {} for kind in expected}
bad = []


def record(kind, case, rc, data):
    outcomes[kind][rc] = outcomes[kind].get(rc, 0) + 1
    if rc not in expected[kind]:
        kept = os.path.join(work, f"bad-{kind.replace(' ', '-')}-{case}.h5")
        open(kept, "wb").write(data)  # the program may have moved or rewritten its file
        bad.append((kept, rc))


trial = os.path.join(work, "trial")
shutil.copytree(good, trial)
victim = os.path.join(trial, "runs", "E-r0.h5")
run_file = os.path.join(good, "runs", "E-r0.h5")
for kind, original in (("run file", open(run_file, "rb").read()),
                       ("older run file", without_text_copy(run_file))):
    for case in range(cases):  # a dry run changes nothing in OUTPUT: no files to put back
        case_bytes = damaged(original, case)
        open(victim, "wb").write(case_bytes)
        record(kind, case, run([sweep, config, "run.output=" + trial, "--dry-run"]), case_bytes)
sweep_file = os.path.join(good, "sweep.h5")
for kind, original in (("sweep.h5", open(sweep_file, "rb").read()),
                       ("older sweep.h5", without_text_copy(sweep_file))):
    for case in range(cases):
        path = os.path.join(work, "sweep-case.h5")
        case_bytes = damaged(original, case)
        open(path, "wb").write(case_bytes)
        record(kind, case, run([report, path, "--no-plots", "--format", "csv"]), case_bytes)
# a run stopped part-way: status running, its checkpoint in the middle of epoch 2
stopped = os.path.join(work, "stopped")
part_way = subprocess.Popen([sweep, config, "run.output=" + stopped, "sweep.patterns=E:3:4",
                             "sweep.repeats=1", "train.epochs=3"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=sanitizers)
for line in part_way.stdout:
    if b"epoch   1/3" in line:
        part_way.send_signal(signal.SIGTERM)
        break
part_way.communicate(timeout=300)
if part_way.returncode != 3:
    sys.exit(f"the sweep to stop part-way exited {part_way.returncode}, not 3 (stopped)")
running = open(os.path.join(stopped, "runs", "E-r0.h5"), "rb").read()
resumed = os.path.join(work, "resumed")
for case in range(cases):
    shutil.rmtree(resumed, ignore_errors=True)
    shutil.copytree(stopped, resumed)
    case_bytes = damaged(running, case)
    open(os.path.join(resumed, "runs", "E-r0.h5"), "wb").write(case_bytes)
    rc = run([sweep, config, "run.output=" + resumed, "sweep.patterns=E:3:4",
              "sweep.repeats=1", "train.epochs=3"])
    record("resumed run", case, rc, case_bytes)
for kind, counts in outcomes.items():
    print(f"{kind}: {cases} cases, exit codes {dict(sorted(counts.items(), key=str))}")
for path, rc in bad:
    print(f"{'CRASH' if rc not in (1, 2) else 'REFUSED'} (exit {rc}): {path}")
if bad:
    print(f"{len(bad)} bad cases; the files are kept in {work}")
    sys.exit(1)
shutil.rmtree(work)
print("no crash; every damaged file read right or refused as expected")
