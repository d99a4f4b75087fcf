"""Faults at the edges: bad outputs are refused before any work, one writer per output."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bayes_inr.errors import InputError
from bayes_inr.fit import main
from bayes_inr.outputs import check_output, output_lock

# a default-size fit (128 x 128, 2000 steps) takes minutes: a refusal must come first
SLOW_FIT = ["--inference", "mcd", "--quiet"]


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
            [sys.executable, "-c", "from bayes_inr.outputs import output_lock\n"
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
    from bayes_inr.config import load_config

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
