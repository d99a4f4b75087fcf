"""The fault matrix: every fault class of the CLIs run as a real subprocess, with what it left.

    python analysis/fault_matrix.py [--out docs/faults.md] [--only NAME ...]

Each case runs in its own empty directory as the working directory, in a new session, so
that every process it starts (workers included) can be found afterwards. A case may send a
signal once the run shows it has started work (a file appears, or a line is printed), and
may follow with a second command (a resume or a rerun). Recorded per command: the exit code,
seconds from the signal to the exit (or the whole run), the number of stderr lines, whether
stderr holds a traceback, the last stderr line, the files left in the directory, and the
processes of the session still alive one second after the exit. The markdown table is
written atomically to ``--out``; nothing here is tuned, the figures are what happened.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bayes_inr.core.atomic import atomic_path

ROOT = Path(__file__).resolve().parents[1]
FIT = ["-m", "bayes_inr.fit", "--quiet"]
TINY = ["--size", "32", "--views", "8"]
# a grid of three tiny MCD trials on one validation phantom at 32 x 32
GRID = ("[base]\ninference = \"mcd\"\ndepth = 1\nwidth = 16\nlr = 0.01\ndraws = 10\n"
        "[grid]\nsteps = [300, 1500, 1600]\n")
SWEEP = ["-m", "bayes_inr.sweep", "--grid", "g.toml", "--size", "32", "--views", "8", "--ids",
         "0", "--workers", "2", "--out", "sweep"]
LONG_SVI = [*FIT, *TINY, "--inference", "mcd", "--steps", "1500", "--checkpoint-every", "50"]
NUTS_WORKERS = [*FIT, *TINY, "--inference", "nuts", "--config", "none", "--chains", "4",
                "--workers", "2", "--init", "prior", "--width", "16", "--depth", "1",
                "--warmup", "300", "--draws", "300", "--checkpoint-every", "20",
                "--max-tree-depth", "5", "--out", "run.nc"]


@dataclass
class Case:
    """One fault: a command, what prepares its directory, and optionally a signal and a
    follow-up command."""

    name: str
    argv: list[str]
    setup: Callable[[Path], None] | None = None
    signal: int | None = None
    ready: Callable[[Path, str], bool] | None = None
    then: list[str] | None = None
    expect: str = field(default="exit 2, one line, nothing written")


@dataclass
class Outcome:
    code: int | None
    seconds: float
    stderr_lines: int
    traceback: bool
    message: str
    files: list[str]
    orphans: int
    stderr: str


def _write(name: str, text: str) -> Callable[[Path], None]:
    return lambda d: (d / name).write_text(text)


def _npy(name: str, array: np.ndarray) -> Callable[[Path], None]:
    return lambda d: np.save(d / name, array)


def _file_exists(pattern: str) -> Callable[[Path, str], bool]:
    return lambda d, out: any(d.glob(pattern))


def _printed(text: str) -> Callable[[Path, str], bool]:
    return lambda d, out: text in out


def _session_processes(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":  # session id, not a zombie
            pids.append(int(entry.name))
    return pids


def _run(argv: list[str], cwd: Path, sig: int | None, ready, timeout: float) -> Outcome:
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *argv], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    out = ""
    if sig is not None:
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        while proc.poll() is None and time.perf_counter() - start < timeout:
            with contextlib.suppress(BlockingIOError):
                out += os.read(fd, 1 << 16).decode(errors="replace")
            if ready(cwd, out):
                break
            time.sleep(0.2)
        os.set_blocking(fd, True)
        proc.send_signal(sig)
        start = time.perf_counter()
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        err += "\n(still running after the timeout: killed)"
    seconds = time.perf_counter() - start
    time.sleep(1.0)
    orphans = _session_processes(proc.pid)
    for pid in orphans:  # leave the machine clean, but count them
        os.kill(pid, signal.SIGKILL)
    lines = [line for line in err.splitlines() if line.strip()]
    return Outcome(proc.returncode, seconds, len(lines), "Traceback" in err,
                   lines[-1] if lines else "", sorted(p.name for p in cwd.iterdir()),
                   len(orphans), err.strip())


def cases() -> list[Case]:
    text_npy = _write("slice.npy", "not an array\n")
    return [
        Case("--out in a missing directory", [*FIT, *TINY, "--out", "nowhere/run.nc"]),
        Case("--out is a directory", [*FIT, *TINY, "--out", "."]),
        Case("--out exists", [*FIT, *TINY, "--out", "run.nc"], _write("run.nc", "earlier")),
        Case("a second writer to one --out", [*FIT, *TINY, "--out", "run.nc"],
             _write(".run.nc.lock", f"{os.getpid()}\n")),
        Case("TOML value of the wrong type (width = \"wide\")",
             [*FIT, *TINY, "--config", "bad.toml"], _write("bad.toml", 'width = "wide"\n')),
        Case("TOML value of the wrong type (steps = 10.5)",
             [*FIT, *TINY, "--config", "bad.toml"], _write("bad.toml", "steps = 10.5\n")),
        Case("unknown configuration name", [*FIT, *TINY, "--config", "mcd_21"]),
        Case("--size 0", [*FIT, "--size", "0"]),
        Case("--size 100000", [*FIT, "--size", "100000"]),
        Case("--views 10000000", [*FIT, "--size", "64", "--views", "10000000"]),
        Case("a text file named .npy", [*FIT, "--image", "slice.npy", "--views", "8"],
             text_npy),
        Case("a float image outside [0, 1]", [*FIT, "--image", "slice.npy", "--views", "8"],
             _npy("slice.npy", np.full((32, 32), 7.0))),
        Case("sweep --workers 0", ["-m", "bayes_inr.sweep", "--grid", "sweeps/mcd_cpu",
                                   "--workers", "0", "--out", "sweep"]),
        Case("baselines --out in a missing directory",
             ["-m", "bayes_inr.baselines", "--dataset", str(ROOT / "data/benchmark_128.nc"),
              "--out", "nowhere/table.csv"]),
        Case("data --out in a missing directory",
             ["-m", "bayes_inr.data", "--out", "nowhere/bench.nc"]),
        Case("btv without a TV weight (--config none)",
             [*FIT, *TINY, "--inference", "btv", "--config", "none"]),
        Case("--calibration file that does not exist",
             [*FIT, *TINY, "--calibration", "cal.json", "--out", "run.nc"]),
        Case("--calibration file that is not a calibration",
             [*FIT, *TINY, "--calibration", "cal.json", "--out", "run.nc"],
             _write("cal.json", "{\"levels\": 3}")),
        Case("stack fit of run files that do not exist",
             ["-m", "bayes_inr.stack", "fit", "--component", "A", "a.nc", "--component", "B",
              "b.nc", "--out", "stack.json"]),
        Case("stack apply with a stack file that is not JSON",
             ["-m", "bayes_inr.stack", "apply", "a.nc", "b.nc", "--stack", "stack.json",
              "--out", "mixed.nc"], _write("stack.json", "{not json")),
        Case("SIGTERM to an MCD fit, then --resume", [*LONG_SVI, "--out", "run.nc"],
             signal=signal.SIGTERM, ready=_file_exists(".run.nc*ckpt*"),
             then=[*FIT, "--resume", "run.nc"],
             expect="exit 130 and the resume command; the resume finishes"),
        Case("SIGKILL to an MCD fit, then --resume", [*LONG_SVI, "--out", "run.nc"],
             signal=signal.SIGKILL, ready=_file_exists(".run.nc*ckpt*"),
             then=[*FIT, "--resume", "run.nc"],
             expect="killed; the resume continues from the last checkpoint"),
        Case("SIGTERM to nuts in its MAP warm start",
             [*FIT, *TINY, "--inference", "nuts", "--steps", "20000", "--out", "run.nc"],
             signal=signal.SIGTERM, ready=_printed("chain"),
             expect="exit 130, a line saying nothing was saved yet"),
        Case("SIGTERM to 4 nuts chains in 2 workers, then --resume", NUTS_WORKERS,
             signal=signal.SIGTERM, ready=_file_exists(".run.nc.chains/chain*.pt"),
             then=[*FIT, "--resume", "run.nc"],
             expect="exit 130 within 10 s with the workers' saved chains, no process left; "
                    "the resume finishes"),
        Case("SIGTERM to a 2-worker ensemble, then the same command",
             [*FIT, *TINY, "--inference", "ensemble", "--members", "3", "--workers", "2",
              "--steps", "3000", "--out", "de.nc"],
             signal=signal.SIGTERM, ready=_file_exists("de.nc.members/*.nc"),
             then=[*FIT, *TINY, "--inference", "ensemble", "--members", "3", "--workers", "2",
                   "--steps", "3000", "--out", "de.nc"],
             expect="exit 130 within 10 s, no process left; the rerun fits only the rest"),
        Case("SIGTERM to a 2-worker sweep, then the same command", SWEEP, _write("g.toml", GRID),
             signal=signal.SIGTERM, ready=_file_exists("sweep/*.csv"), then=SWEEP,
             expect="exit 130 within 10 s, no process left; the rerun runs only the rest"),
    ]


def _cell(outcome: Outcome) -> str:
    code = "timeout" if outcome.code is None else str(outcome.code)
    return (f"{code} | {outcome.seconds:.1f} | {outcome.stderr_lines}"
            f"{' (traceback)' if outcome.traceback else ''} | "
            f"`{outcome.message.replace('|', '/')[:160]}` | "
            f"{', '.join(outcome.files) or '-'} | {outcome.orphans}")


def run_cases(selected: list[Case], timeout: float) -> tuple[list[str], list[str]]:
    """The table rows, and the full stderr of every command that wrote more than one line."""
    rows, details = [], []
    for case in selected:
        work = Path(tempfile.mkdtemp(prefix="fault_"))
        try:
            if case.setup:
                case.setup(work)
            commands = [(case.name, case.argv, case.signal, case.ready)]
            if case.then:
                commands.append((f"... then `{' '.join(case.then[2:])}`", case.then, None,
                                 None))
            for step, (name, argv, sig, ready) in enumerate(commands):
                outcome = _run(argv, work, sig, ready, timeout)
                expect = "" if step else case.expect
                rows.append(f"| {name} | {expect} | {_cell(outcome)} |")
                print(rows[-1], flush=True)
                if outcome.stderr_lines > 1:
                    details.append(f"{case.name}: `{' '.join(argv[1:])}`\n\n```text\n"
                                   f"{outcome.stderr}\n```\n")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return rows, details


HEADER = """# Fault matrix

Generated by `python analysis/fault_matrix.py` (every case a real subprocess in an empty
directory; signals are sent once the run shows it has started work). Columns: the exit code,
seconds from the signal (or the start) to the exit, stderr lines, the last stderr line, the
files left in the directory, and the run's processes still alive 1 s after it exited. The
seconds of a refused command are mostly Python and torch starting up (the 1, 5 and 15 min
load averages of the machine when the matrix finished: {load}).

| case | expected | exit | s | stderr lines | last stderr line | files left | processes left |
|---|---|---|---|---|---|---|---|
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "faults.md")
    parser.add_argument("--only", nargs="+", metavar="TEXT",
                        help="run only the cases whose name contains one of these")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds before a command is killed and reported as a timeout")
    args = parser.parse_args(argv)
    selected = [c for c in cases() if not args.only or any(t in c.name for t in args.only)]
    rows, details = run_cases(selected, args.timeout)
    if not args.only:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.out) as tmp:
            load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
            extra = "\n## Commands that wrote more than one stderr line\n\n" + "\n".join(
                details) if details else ""
            tmp.write_text(HEADER.format(load=load) + "\n".join(rows) + "\n" + extra)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
