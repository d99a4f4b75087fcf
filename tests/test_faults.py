"""Faults at the edges: bad outputs are refused before any work, one writer per output,
impossible sizes refused before allocating, interrupted SVI fits resume bit-identically."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bayes_inr import posterior
from bayes_inr.core.errors import InputError
from bayes_inr.core.outputs import check_output, check_output_dir, output_lock
from bayes_inr.data.sample import phantom_sample
from bayes_inr.fit import main
from bayes_inr.inference import single as fit_module
from bayes_inr.inference.config import FitConfig
from bayes_inr.inference.fit import fit
from bayes_inr.inference.single import check_resumable, resume_inputs
from bayes_inr.inference.svi import checkpoint_path, load_checkpoint
from bayes_inr.physics import radon, resources
from bayes_inr.physics.geometry import Geometry, default_detectors

# a default-size fit (128 x 128, 2000 steps) takes minutes: a refusal must come first
SLOW_FIT = ["--config", "none", "--inference", "mcd", "--quiet"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err, err
    return err


@pytest.mark.parametrize("case", ["missing_dir", "is_dir", "exists"])
def test_fit_refuses_a_bad_out_before_any_work(tmp_path, capsys, case):
    out = {"missing_dir": tmp_path / "nowhere" / "run.nc", "is_dir": tmp_path,
           "exists": tmp_path / "run.nc"}[case]
    if case == "exists":
        out.write_bytes(b"an earlier result")
    start = time.perf_counter()
    assert main([*SLOW_FIT, "--out", str(out)]) == 2
    assert time.perf_counter() - start < 10
    err = one_line_error(capsys)
    assert {"missing_dir": "does not exist", "is_dir": "is a directory",
            "exists": "--overwrite"}[case] in err
    if case == "exists":
        assert out.read_bytes() == b"an earlier result"  # untouched


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only directory")
def test_read_only_directory_is_refused(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(InputError, match="not writable"):
            check_output(locked / "run.nc")
    finally:
        locked.chmod(0o700)


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(tmp_path, capsys):
    out = tmp_path / "run.nc"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".run.nc.lock").write_text(f"{holder.pid}\n")
        assert main([*SLOW_FIT, "--out", str(out)]) == 2
        assert f"process {holder.pid}" in one_line_error(capsys)
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and is taken over, then released
    with output_lock(out) as lock:
        assert lock.read_text().strip() == str(os.getpid())
    assert not lock.exists()
    # while this process holds the lock, another process is refused
    with output_lock(out):
        other = subprocess.run(
            [sys.executable, "-c", "from bayes_inr.core.outputs import output_lock\n"
             f"with output_lock({str(out)!r}): pass"], capture_output=True, text=True)
    assert other.returncode != 0 and "another run" in other.stderr


@pytest.mark.parametrize("line", ['width = "wide"', "steps = 10.5", "infer_sigma = 1",
                                  "lr = true", "prior = 3"])
def test_a_config_value_of_the_wrong_type_is_one_line(tmp_path, capsys, line):
    config = tmp_path / "bad.toml"
    config.write_text(f'inference = "map"\n{line}\n')
    assert main(["--config", str(config), "--out", str(tmp_path / "run.nc")]) == 2
    name = line.split()[0]
    assert f"{name} must be" in one_line_error(capsys)
    assert not (tmp_path / "run.nc").exists()


def test_an_integer_is_a_valid_float_in_a_config(tmp_path):
    from bayes_inr.inference.config import load_config

    config = tmp_path / "ok.toml"
    config.write_text("lr = 1\nomega0 = 3\n")
    loaded = load_config(config)
    assert loaded.lr == 1.0 and isinstance(loaded.lr, float) and loaded.omega0 == 3.0


@pytest.mark.parametrize("size", ["0", "-4"])
def test_size_must_be_positive(tmp_path, capsys, size):
    assert main(["--size", size, "--out", str(tmp_path / "run.nc")]) == 2
    assert "--size must be positive" in one_line_error(capsys)


def test_npy_messages_never_suggest_unsafe_or_missing_options(tmp_path, capsys):
    import numpy as np

    text = tmp_path / "notes.npy"
    text.write_text("these are notes, not an array\n")
    wide = tmp_path / "wide.npy"
    np.save(wide, np.linspace(-1.0, 3.0, 64).reshape(8, 8))
    for args in (["--image", str(text)], ["--sinogram", str(text), "--size", "8"],
                 ["--image", str(wide)]):
        assert main([*args, "--out", str(tmp_path / "run.nc")]) == 2
        err = one_line_error(capsys)
        assert "allow_pickle" not in err and "pass window" not in err, err


# ----------------------------------------------------------------- SVI checkpoints, resume

TINY_SVI = ["--config", "none", "--inference", "mcd", "--size", "16", "--views", "8", "--width",
            "16", "--depth", "2", "--draws", "4", "--threads", "1", "--quiet"]


def tiny_config(**changes) -> FitConfig:
    return FitConfig(inference="mcd", width=16, depth=2, steps=40, checkpoint_every=10,
                     draws=4, threads=1).replace(**changes)


def same_run(a, b) -> None:
    """The images and the loss history of two runs are bit-identical."""
    assert np.array_equal(posterior.image_draws(a), posterior.image_draws(b))
    assert np.array_equal(a.constant_data["loss"].values, b.constant_data["loss"].values)


def test_an_interrupted_svi_fit_resumes_bit_identically(tmp_path, monkeypatch, capsys):
    sample, config = phantom_sample(0, 8, 16), tiny_config()
    whole = fit(sample, config, progress=False, out=tmp_path / "whole.nc")
    assert not checkpoint_path(tmp_path / "whole.nc").exists()  # removed when finished
    save = fit_module.save_checkpoint

    def save_then_sigterm(state, path):  # SIGTERM once, after the checkpoint of step 11
        save(state, path)
        if state["step"] == 11:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(fit_module, "save_checkpoint", save_then_sigterm)
    out = tmp_path / "run.nc"
    assert main([*TINY_SVI, "--steps", "40", "--checkpoint-every", "10", "--out", str(out)]) == 130
    monkeypatch.undo()
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.endswith(f"python -m bayes_inr.fit --resume {out}"), err
    assert not out.exists()
    stored, resumed_config, state = resume_inputs(out, {})
    assert state["step"] == 12 and len(state["losses"]) == 12  # the step that was running
    assert resumed_config == config
    with pytest.raises(InputError, match="another configuration: lr"):
        fit(sample, config.replace(lr=0.01), progress=False, out=out, resume=state)
    with pytest.raises(InputError, match="other data"):
        fit(phantom_sample(1, 8, 16), config, progress=False, out=out, resume=state)
    assert main(["--resume", str(out), "--quiet"]) == 0
    same_run(whole, posterior.load(out))
    assert not checkpoint_path(out).exists()


def test_a_run_recorded_before_a_setting_existed_resumes_at_its_default():
    """A checkpoint without ``start_tries`` (recorded before it existed) is the run of
    ``start_tries`` 1, its default, and of no other value."""
    import dataclasses

    record = dataclasses.asdict(tiny_config()) | {"prior_used": "normal", "sigma_used": 0.01}
    stored = {k: v for k, v in record.items() if k != "start_tries"}
    check_resumable(stored, record)
    with pytest.raises(InputError, match="another configuration: start_tries"):
        check_resumable(stored, record | {"start_tries": 3})


def test_an_svi_fit_killed_with_sigkill_resumes_from_its_checkpoint(tmp_path):
    args = [*TINY_SVI, "--steps", "300", "--checkpoint-every", "10"]
    out, whole = tmp_path / "run.nc", tmp_path / "whole.nc"
    command = [sys.executable, "-m", "bayes_inr.fit", *args, "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = checkpoint_path(out)
    try:
        while not checkpoint.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.005)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    assert 0 < load_checkpoint(checkpoint)["step"] < 300
    assert main([*args, "--out", str(whole)]) == 0  # the uninterrupted fit
    done = subprocess.run([sys.executable, "-m", "bayes_inr.fit", "--resume", str(out),
                           "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not checkpoint.exists()
    same_run(posterior.load(whole), posterior.load(out))


def test_a_checkpoint_is_neither_lost_nor_left_behind(tmp_path, capsys):
    out = tmp_path / "run.nc"
    checkpoint_path(out).write_bytes(b"an unfinished fit")
    assert main([*TINY_SVI, "--out", str(out)]) == 2
    assert "--resume" in one_line_error(capsys)
    assert main(["--resume", str(out), "--out", str(tmp_path / "other.nc")]) == 2
    assert "drop --out" in one_line_error(capsys)
    assert main(["--resume", str(out)]) == 2  # not a checkpoint
    assert "not a bayes_inr SVI checkpoint" in one_line_error(capsys)
    assert main(["--resume", str(tmp_path / "none.nc")]) == 2
    assert "nothing to resume" in one_line_error(capsys)
    assert checkpoint_path(out).read_bytes() == b"an unfinished fit"


# ----------------------------------------------------------------------- resource guards

@pytest.mark.parametrize("argv, says", [
    (["--size", "100000"], "available"),
    (["--size", "20000", "--sinogram", "SINO"], "available"),
    (["--size", "64", "--views", "10000000"], "views per detector"),
])
def test_impossible_sizes_are_refused_at_once_in_one_line(tmp_path, capsys, argv, says):
    sino = tmp_path / "sino.npy"
    np.save(sino, np.zeros((20, default_detectors(20000)), np.float32))
    argv = [str(sino) if a == "SINO" else a for a in argv]
    start = time.perf_counter()
    assert main([*argv, "--out", str(tmp_path / "run.nc")]) == 2
    assert time.perf_counter() - start < 5
    err = one_line_error(capsys)
    assert says in err and (says != "available" or "needs about" in err), err


def test_the_memory_guards_of_data_and_the_operator(tmp_path, capsys, monkeypatch):
    from bayes_inr.data.cli import main as data_main

    assert data_main(["--size", "100000", "--out", str(tmp_path / "b.nc")]) == 2
    assert "phantom" in one_line_error(capsys)
    monkeypatch.setattr(resources, "available_bytes", lambda: 10**6)
    with pytest.raises(InputError, match=r"operator .* but 976\.6 KiB is available"):
        radon.projection_matrix(Geometry(37, 5))  # a geometry no other test caches


@pytest.mark.parametrize("projector", radon.PROJECTORS)
def test_the_operator_estimate_bounds_its_nonzeros(projector):
    geometry = Geometry(24, 7)
    bound = resources.estimate(24, 7)["operator"] / resources.BYTES_PER_NONZERO
    assert radon.projection_matrix(geometry, projector).nnz <= bound


def test_the_operator_is_built_in_blocks_that_a_signal_can_stop(monkeypatch):
    geometry = Geometry(26, 9)
    whole = radon.projection_matrix.__wrapped__(geometry, "linear")
    monkeypatch.setattr(radon, "BLOCK_NONZEROS", 2 * 26 * geometry.n_detectors * 2)  # 2 views
    blocks = []
    build = radon._matrix_block

    def counted(*args):
        blocks.append(args[2])
        return build(*args)

    monkeypatch.setattr(radon, "_matrix_block", counted)
    assert (radon.projection_matrix.__wrapped__(geometry, "linear") != whole).nnz == 0
    assert len(blocks) == 5

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    def signal_in_block_two(*args):
        blocks.append(args[2])
        if len(blocks) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return build(*args)

    previous = signal.signal(signal.SIGTERM, interrupt)
    monkeypatch.setattr(radon, "_matrix_block", signal_in_block_two)
    blocks.clear()
    try:
        with pytest.raises(KeyboardInterrupt):
            radon.projection_matrix.__wrapped__(geometry, "linear")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert len(blocks) == 2  # stopped before the third block


# --------------------------------------------------- every CLI checks its outputs first

def test_check_output_dir(tmp_path):
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    (tmp_path / "file").write_text("x")
    for bad, says in ((tmp_path / "file", "is a file"), (tmp_path / "file" / "sub", "is a file")):
        with pytest.raises(InputError, match=says):
            check_output_dir(bad)


def cli_cases(tmp_path: Path) -> dict:
    """Per CLI: (main, argv with a bad output and inputs that do not exist, what it says)."""
    from bayes_inr import baselines, demo, report
    from bayes_inr.data import cli as data

    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    missing = str(tmp_path / "missing.nc")
    return {
        "baselines": (baselines.main, ["--dataset", missing, "--out",
                                       str(tmp_path / "nowhere" / "t.csv")], "does not exist"),
        "baselines exists": (baselines.main, ["--dataset", missing, "--out", str(a_file)],
                             "--overwrite"),
        "data": (data.main, ["--out", str(tmp_path / "nowhere" / "b.nc")], "does not exist"),
        "data exists": (data.main, ["--out", str(a_file)], "--overwrite"),
        "report": (report.main, [missing, "--out", str(a_file)], "is a file"),
        "demo": (demo.main, ["--out", str(a_file / "demo")], "is a file"),
    }


@pytest.mark.parametrize("cli", ["baselines", "baselines exists", "data", "data exists",
                                 "report", "demo"])
def test_every_cli_refuses_a_bad_output_before_any_work(tmp_path, capsys, cli):
    run, argv, says = cli_cases(tmp_path)[cli]
    before = sorted(tmp_path.iterdir())
    start = time.perf_counter()
    assert run(argv) == 2
    assert time.perf_counter() - start < 10  # data and demo work for minutes
    assert says in one_line_error(capsys)
    assert sorted(tmp_path.iterdir()) == before  # nothing written


def test_table1_refuses_a_file_as_its_output_directory(tmp_path, capsys, monkeypatch):
    sys.path.insert(0, str(Path(__file__).parents[1] / "analysis"))
    table1 = pytest.importorskip("table1")
    (tmp_path / "a_file").write_text("x")
    monkeypatch.setattr(sys, "argv", ["table1.py", "--out", str(tmp_path / "a_file")])
    with pytest.raises(SystemExit) as exit_:
        table1.main()
    assert exit_.value.code == 2 and "is a file" in one_line_error(capsys)


@pytest.mark.parametrize("line", ['width = "wide"', "steps = 10.5"])
def test_a_config_value_of_the_wrong_type_is_one_line_in_the_demo(tmp_path, capsys, line):
    from bayes_inr import demo

    config = tmp_path / "bad.toml"
    config.write_text(f"{line}\n")
    assert demo.main(["--config", str(config), "--out", str(tmp_path / "demo")]) == 2
    assert f"{line.split()[0]} must be" in one_line_error(capsys)
    assert not (tmp_path / "demo").exists()
