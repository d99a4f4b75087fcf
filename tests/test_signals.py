"""Signals: an interrupted ensemble, sweep or MAP warm start stops its workers at once,
leaves no process behind, keeps its finished work and says how to continue.

The Ray test is marked slow (``pytest -m slow tests/test_signals.py``): a local Ray instance
takes long to start.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bayes_inr import posterior
from bayes_inr.data.sample import phantom_sample
from bayes_inr.experiments.results import read_table
from bayes_inr.fit import main as fit_main
from bayes_inr.inference.config import FitConfig
from bayes_inr.inference.ensemble import fit_ensemble, members_dir
from bayes_inr.sweep import main as sweep_main

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(),
                                reason="lists processes through /proc")
TINY = {"inference": "mcd", "depth": 2, "width": 16, "lr": 1e-2, "draws": 4,
        "head": "sigmoid"}
FAST, ENDLESS = 20, 10**6  # optimisation steps: done at once / not before the signal
DATA = ["--size", "32", "--views", "8"]
EXIT_WITHIN = 10.0  # seconds from the signal to the exit
START_WITHIN = 240.0  # a loaded 2-core machine takes a while to spawn torch workers


# ----------------------------------------------------------------------------- processes


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids of every live (non-zombie) process."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def descendants(pid: int) -> set[int]:
    """The live processes below ``pid``."""
    children, found, todo = _children(), set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int], within: float = 3.0) -> set[int]:
    """Those of ``pids`` still running (not zombies) after up to ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        live = {pid for pid in pids if _running(pid)}
        if not live or time.monotonic() > deadline:
            return live
        time.sleep(0.1)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def workers_of(pid: int) -> set[int]:
    """The spawned multiprocessing workers below ``pid``."""
    found = set()
    for child in descendants(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.add(child)
        except OSError:
            pass
    return found


@pytest.fixture
def start():
    """``start(module, args, cwd)``: ``python -m module args`` in its own session (stdout,
    stderr to files in ``cwd``); whatever is left of its process group is killed at the
    end of the test, so that a failing test leaves nothing running either."""
    groups = []

    def interactive():
        # as from a terminal: a run started in the background of a non-interactive shell
        # (nohup, cron, `make test &`) inherits SIGINT ignored, and Python keeps it so
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    def launch(module: str, args: list[str], cwd: Path) -> subprocess.Popen:
        env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        with (cwd / "stdout.txt").open("w") as out, (cwd / "stderr.txt").open("w") as err:
            process = subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd,
                                       env=env, stdout=out, stderr=err,
                                       start_new_session=True, preexec_fn=interactive)
        groups.append(process.pid)
        return process

    yield launch
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


def wait_for(condition, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + START_WITHIN
    while not condition():
        assert process is None or process.poll() is None, f"exited before {what}"
        assert time.monotonic() < deadline, f"no {what} after {START_WITHIN} s"
        time.sleep(0.1)


def interrupt(process: subprocess.Popen, sig=signal.SIGTERM, group: bool = False
              ) -> tuple[set[int], float]:
    """Send ``sig`` (to the process group with ``group``, as a terminal's Ctrl-C does);
    the processes that were below it, and the seconds until it exited."""
    below = descendants(process.pid)
    sent = time.monotonic()
    if group:
        os.killpg(process.pid, sig)
    else:
        process.send_signal(sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=EXIT_WITHIN + 20)
    return below, time.monotonic() - sent


def one_message(cwd: Path, ignore: tuple[str, ...] = ("step/s", "s/step", "steps to go")
                ) -> str:
    """The one line the interrupted command wrote to stderr, but for lines holding one of
    ``ignore`` (progress bars, and the line that replaces them off a terminal)."""
    lines = [line for line in (cwd / "stderr.txt").read_text().splitlines()
             if line.strip() and not any(text in line for text in ignore)]
    assert len(lines) == 1 and lines[0].startswith("interrupted"), lines
    return lines[0]


def continue_args(message: str, module: str) -> list[str]:
    """The arguments of the ``continue with: python -m module ...`` command of a message."""
    command = shlex.split(message.split("continue with: ", 1)[1])
    assert command[:3] == ["python", "-m", module], command
    return command[3:]


def toml(path: Path, **values) -> Path:
    path.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items()))
    return path


# ----------------------------------------------------------------------------- the checks


def test_the_process_checks_see_a_left_over_process(tmp_path):
    """Negative control: a killed parent's child outlives it, and the checks say so."""
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
         "time.sleep(60)"])
    wait_for(lambda: descendants(parent.pid), "child", parent)
    below = descendants(parent.pid)
    parent.kill()
    parent.wait()
    try:
        assert alive(below, within=0.5) == below
    finally:
        for pid in below:
            os.kill(pid, signal.SIGKILL)
    assert not alive(below)


def test_ensemble_sigterm_keeps_finished_members_and_the_rerun_fits_the_rest(
        start, tmp_path, capsys, monkeypatch):
    toml(tmp_path / "m0.toml", **TINY, steps=FAST)
    slow = toml(tmp_path / "m1.toml", **TINY, steps=ENDLESS)
    args = [*DATA, "--quiet", "--member-configs", "m0.toml", "m1.toml", "--workers", "2",
            "--threads", "1", "--out", "de.nc"]
    process = start("bayes_inr.fit", args, tmp_path)
    store = members_dir(tmp_path / "de.nc")
    wait_for((store / "member0.nc").is_file, "first member", process)
    assert len(workers_of(process.pid)) == 2  # the slow member's worker is still busy
    below, seconds = interrupt(process)
    assert process.returncode == 130 and seconds < EXIT_WITHIN, (process.returncode, seconds)
    assert not alive(below)
    message = one_message(tmp_path)
    assert f"1 of 2 members are saved in {store.name}" in message
    assert continue_args(message, "bayes_inr.fit") == args
    assert sorted(p.name for p in store.iterdir()) == ["member0.nc"]
    assert not (tmp_path / "de.nc").exists()

    # the same command fits only the missing member (made fast here), then assembles
    toml(slow, **TINY, steps=FAST)
    monkeypatch.chdir(tmp_path)
    kept = posterior.image_draws(posterior.load(store / "member0.nc"))
    capsys.readouterr()
    assert fit_main(continue_args(message, "bayes_inr.fit")) == 0
    assert "ensemble: 1 of 2 members already fitted" in capsys.readouterr().out
    idata = posterior.load(tmp_path / "de.nc")
    assert posterior.config(idata)["members_reused"] == 1
    assert (posterior.image_draws(idata)[:len(kept)] == kept).all()
    assert not store.exists()


def test_a_member_of_another_configuration_or_data_is_refitted(tmp_path):
    sample = phantom_sample(0, 8, 16)
    config = FitConfig(**TINY | {"inference": "ensemble", "members": 2, "width": 8,
                                 "steps": FAST, "threads": 1})
    store = tmp_path / "de.nc.members"
    lines: list[str] = []

    def run(sample, config):
        lines.clear()
        return fit_ensemble(sample, config, progress=False, store=store, log=lines.append)

    first = run(sample, config)
    assert lines == [f"ensemble: 0 of 2 members already fitted in {store}"]
    stamps = [(store / f"member{k}.nc").stat().st_mtime_ns for k in range(2)]
    again = run(sample, config.replace(workers=1, threads=2))  # run controls only
    assert lines == [f"ensemble: 2 of 2 members already fitted in {store}"]
    assert [(store / f"member{k}.nc").stat().st_mtime_ns for k in range(2)] == stamps
    assert (posterior.image_draws(again) == posterior.image_draws(first)).all()

    changed = run(sample, config.replace(dropout=0.3))
    assert lines == [f"ensemble: 0 of 2 members already fitted in {store} (2 stored of "
                     "another configuration or data: refitted)"]
    assert [json.loads(c)["dropout"] for c in changed.posterior_predictive["member_config"].values
            ] == [0.3, 0.3]
    run(phantom_sample(1, 8, 16), config.replace(dropout=0.3))  # other data
    assert "0 of 2 members already fitted" in lines[0]
    (store / "member1.nc").write_bytes(b"not a netCDF file")
    run(phantom_sample(1, 8, 16), config.replace(dropout=0.3))
    assert "1 of 2 members already fitted" in lines[0] and "(1 stored" in lines[0]


def test_workers_die_with_an_abruptly_killed_parent(start, tmp_path):
    toml(tmp_path / "m0.toml", **TINY, steps=FAST)
    toml(tmp_path / "m1.toml", **TINY, steps=ENDLESS)
    process = start("bayes_inr.fit", [*DATA, "--quiet", "--member-configs", "m0.toml",
                                      "m1.toml", "--workers", "2", "--out", "de.nc"], tmp_path)
    wait_for((members_dir(tmp_path / "de.nc") / "member0.nc").is_file, "first member",
             process)
    workers = workers_of(process.pid)
    assert len(workers) == 2
    process.kill()  # SIGKILL: no handler runs, only the workers' watchdogs can act
    process.wait()
    assert not alive(workers, within=5.0)


def test_sweep_ctrl_c_keeps_finished_rows_and_the_rerun_skips_them(start, tmp_path, monkeypatch):
    grid = tmp_path / "g.toml"
    base = "".join(f"{key} = {json.dumps(value)}\n" for key, value in TINY.items())
    grid.write_text(f"[base]\n{base}[grid]\nsteps = [{FAST}, {ENDLESS}]\n")
    args = ["--grid", "g.toml", *DATA, "--ids", "0", "--workers", "2", "--out", "sw"]
    process = start("bayes_inr.sweep", args, tmp_path)
    wait_for(lambda: len(read_table(tmp_path / "sw")) == 1, "first row", process)
    assert len(workers_of(process.pid)) == 2
    below, seconds = interrupt(process, signal.SIGINT, group=True)  # a terminal's Ctrl-C
    assert process.returncode == 130 and seconds < EXIT_WITHIN, (process.returncode, seconds)
    assert not alive(below)
    message = one_message(tmp_path)  # the workers ignored the SIGINT: no tracebacks
    assert "1 finished trial(s) are in sw/results.csv" in message
    assert continue_args(message, "bayes_inr.sweep") == args
    assert not (tmp_path / ".sw.lock").exists()
    [row] = read_table(tmp_path / "sw")
    assert row["status"] == "ok" and row["changes"] == {"steps": FAST}

    grid.write_text(f"[base]\n{base}[grid]\nsteps = [{FAST}, {FAST + 1}]\n")
    monkeypatch.chdir(tmp_path)  # the command, its last trial in this process
    assert sweep_main([*continue_args(message, "bayes_inr.sweep"), "--workers", "1"]) == 0
    rows = read_table(tmp_path / "sw")
    assert [row["changes"]["steps"] for row in rows] == [FAST, FAST + 1]
    assert rows[0]["seconds"] == row["seconds"]  # kept, not rerun


@pytest.mark.slow
def test_a_ray_sweep_stops_its_tasks_and_its_local_instance(start, tmp_path):
    pytest.importorskip("ray", reason="the Ray backend needs bayes_inr[distributed]")
    grid = tmp_path / "g.toml"
    base = "".join(f"{key} = {json.dumps(value)}\n" for key, value in TINY.items())
    grid.write_text(f"[base]\n{base}[grid]\nsteps = [{FAST}, {ENDLESS}]\n")
    args = ["--grid", "g.toml", *DATA, "--ids", "0", "--backend", "ray", "--workers", "2",
            "--out", "sw"]
    process = start("bayes_inr.sweep", args, tmp_path)
    wait_for(lambda: len(read_table(tmp_path / "sw")) == 1, "first row", process)
    assert len(descendants(process.pid)) >= 3  # Ray's servers and task workers
    below, seconds = interrupt(process)
    assert process.returncode == 130 and seconds < EXIT_WITHIN, (process.returncode, seconds)
    assert not alive(below)
    message = one_message(tmp_path, ignore=("\tWARNING ", "\tINFO "))  # Ray's log lines
    assert message.startswith("interrupted: 1 finished trial(s)")
    assert continue_args(message, "bayes_inr.sweep") == args


def test_sigterm_in_the_map_warm_start_says_nothing_was_saved(start, tmp_path):
    process = start("bayes_inr.fit", [*DATA, "--inference", "nuts", "--steps", str(ENDLESS),
                                      "--depth", "1", "--width", "8", "--out", "nuts.nc"],
                    tmp_path)
    wait_for(lambda: "map:" in (tmp_path / "stderr.txt").read_text(), "MAP progress bar",
             process)
    _, seconds = interrupt(process)
    assert process.returncode == 130 and seconds < EXIT_WITHIN, (process.returncode, seconds)
    message = one_message(tmp_path)
    assert "start points" in message and "--init map" in message
    assert "nothing saved" in message and "rerun" in message
    assert not (tmp_path / "nuts.nc").exists() and not (tmp_path / ".nuts.nc.lock").exists()


@pytest.mark.parametrize("case", ["workers", "threads", "address", "file", "no_parent",
                                  "foreign_dir", "locked"])
def test_a_sweep_refuses_bad_arguments_before_creating_its_directory(tmp_path, capsys, case):
    grid = tmp_path / "g.toml"
    grid.write_text("[base]\nsteps = 1\n[grid]\ndropout = [0.1]\n")
    out = tmp_path / "sw"
    extra = {"workers": ["--workers", "0"], "threads": ["--threads", "0"],
             "address": ["--address", "auto"]}.get(case, [])
    if case == "file":
        out.write_text("a file")
    elif case == "no_parent":
        out = tmp_path / "missing" / "sw"
    elif case == "foreign_dir":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "locked":  # another live process (pytest's parent) holds the sweep's lock
        (tmp_path / ".sw.lock").write_text(f"{os.getppid()}\n")
    before = sorted(tmp_path.rglob("*"))
    assert sweep_main(["--grid", str(grid), "--size", "16", "--views", "4", "--ids", "0",
                       *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err, err
    assert sorted(tmp_path.rglob("*")) == before  # nothing created


@pytest.mark.parametrize("exception", ["Interrupted", "KeyboardInterrupt"])
def test_a_caught_interrupt_from_c_called_code_keeps_the_exit_status(exception, tmp_path):
    """CPython 3.11 ends a ``python -m`` process by SIGINT (status -2), whatever it returns,
    once a plain KeyboardInterrupt has passed through code run by ``PyRun_*`` (as C
    extensions do), even when it was caught: why a SIGTERM in a fit's first step could exit
    with -2 instead of 130. The package's handlers raise
    :class:`~bayes_inr.core.errors.Interrupted`, which CPython does not mark. The plain
    exception is the negative control."""
    (tmp_path / "interrupted_module.py").write_text(
        "import ctypes, sys\n"
        "from bayes_inr.core.errors import Interrupted\n"
        "def main():\n"
        "    try:\n"
        f"        ctypes.pythonapi.PyRun_SimpleString(b'raise {exception}')\n"
        f"        raise {exception}\n"
        "    except KeyboardInterrupt:\n"
        "        return 130\n"
        "sys.exit(main())\n")
    done = subprocess.run([sys.executable, "-m", "interrupted_module"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    if exception == "Interrupted":
        assert done.returncode == 130, (done.returncode, done.stderr)
    elif sys.version_info[:2] == (3, 11):  # the behaviour measured; later versions may differ
        assert done.returncode == -signal.SIGINT, (done.returncode, done.stderr)
