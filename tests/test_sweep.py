"""Sweeps: grid files, the results table, resumption, failures, Ray, ranking, boxplots."""

import dataclasses
import math
import sys

import numpy as np
import pytest

from bayes_inr.core.errors import InputError
from bayes_inr.data.sample import phantom_sample
from bayes_inr.evaluation.metrics import score
from bayes_inr.experiments.grid import load_grid
from bayes_inr.experiments.ranking import rank, write_configs
from bayes_inr.experiments.results import METRICS, read_table, write_settings, write_table
from bayes_inr.experiments.sweep import run_sweep
from bayes_inr.inference.config import FitConfig, load_config
from bayes_inr.inference.fit import fit
from bayes_inr.sweep import main

BASE = """[base]
inference = "mcd"
depth = 1
width = 16
steps = 20
lr = 1e-2
draws = 4
head = "sigmoid"
"""
DATA = {"views": 8, "ids": [0], "size": 16}


def grid_file(path, dropouts) -> str:
    path.write_text(BASE + f"[grid]\ndropout = {dropouts}\nomega0 = [2]\n")
    return str(path)


def test_grid_files(tmp_path):
    (tmp_path / "m.toml").write_text('inference = "bbb"\nwidth = 32\n')
    path = tmp_path / "g.toml"
    path.write_text('[base]\nconfig = "m.toml"\nsteps = 7\n[grid]\nomega0 = [1, 4]\n'
                    'activation = ["relu", "sine"]\n')
    grid = load_grid(path)
    assert grid.base == FitConfig(inference="bbb", width=32, steps=7)
    trials = grid.trials()
    assert [t.changes for t in trials[:2]] == [{"omega0": 1.0, "activation": "relu"},
                                             {"omega0": 1.0, "activation": "sine"}]
    assert len({t.id for t in trials}) == 4
    assert trials[0].config() == FitConfig(inference="bbb", width=32, steps=7, omega0=1.0)
    same = load_grid(path).trials()[0]
    assert same.id == trials[0].id
    assert type(same)(same.base | {"threads": 3}, same.changes).id == same.id
    shipped = {name: load_grid(f"models/sweeps/{name}.toml").trials()
               for name in ("mcd_paper", "bbb_paper", "mcd_cpu")}
    assert {name: len(trials) for name, trials in shipped.items()} == {
        "mcd_paper": 720, "bbb_paper": 2160, "mcd_cpu": 4}
    assert {t.config().prior for t in shipped["bbb_paper"]} == {"normal:10", "normal:100",
                                                               "normal:1000"}
    path.write_text('[base]\nconfig = "mcd_20"\n[grid]\ndropout = [0.05]\n')  # a shipped name
    assert load_grid(path).base == load_config("mcd_20")
    for text, message in (("[grid]\nwidht = [1]\n", "unknown fields widht"),
                          ('base = "nowhere"\n[grid]\nwidth = [3]\n', "no shipped configuration"),
                          ("[grid]\nwidth = 3\n", "non-empty list"),
                          ("[base]\nsteps = 3\n", "non-empty"),
                          ("grid = 3\nfoo = 1\n", "unknown keys foo")):
        path.write_text(text)
        with pytest.raises(InputError, match=message):
            load_grid(path)


def test_local_sweep_resumes_and_records_failures(tmp_path, capsys):
    out = tmp_path / "sweep"
    first = run_sweep(grid_file(tmp_path / "a.toml", [0.1]), out, **DATA, log=lambda _: None)
    assert [row["status"] for row in first] == ["ok"]
    config = FitConfig(inference="mcd", depth=1, width=16, steps=20, lr=1e-2, draws=4,
                       head="sigmoid", dropout=0.1, omega0=2.0)
    direct = score(fit(phantom_sample(0, 8, 16), config, progress=False))
    for name in METRICS:
        assert first[0][name] == pytest.approx(direct[name], rel=1e-6), name

    # a larger grid in the same directory, interrupted after its first new trial
    grid = grid_file(tmp_path / "b.toml", [0.1, 1.5, 0.3])

    def interrupt(line):
        if line.startswith("[1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(grid, out, **DATA, log=interrupt)
    rows = read_table(out)
    assert [row["changes"]["dropout"] for row in rows] == [0.1, 1.5]
    failed = rows[1]
    assert failed["status"] == "failed" and math.isnan(failed["psnr"])
    assert failed["error"] == "InputError: dropout must be in [0, 1), got 1.5"

    lines = []
    rows = run_sweep(grid, out, **DATA, log=lines.append)
    assert lines[0].startswith("3 trials, 2 already in")  # the earlier two are not rerun
    assert len(lines) == 2 and "dropout=0.3" in lines[1]
    assert rows[0]["seconds"] == first[0]["seconds"]
    assert [row["status"] for row in rows] == ["ok", "failed", "ok"]
    assert [row["trial_id"] for row in read_table(out)] == [row["trial_id"] for row in rows]

    assert main(["--grid", grid, "--out", str(out), "--views", "8", "--ids", "0",
                 "--size", "16"]) == 0
    text = capsys.readouterr().out
    assert "running 0" in text and "3 trials, 1 failed" in text
    assert (out / "boxplots_psnr.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_bad_input(tmp_path, capsys):
    grid = grid_file(tmp_path / "g.toml", [0.1])
    out = tmp_path / "s"
    cases = [["--grid", str(tmp_path / "none.toml")],
             ["--grid", grid, "--ids", "7", "--size", "16"],
             ["--grid", grid, "--size", "16", "--ids", "0", "--workers", "0"],
             ["--grid", grid, "--size", "16", "--ids", "0", "--address", "auto"],
             ["--rank", str(tmp_path)], ["--plot", str(tmp_path)]]
    for args in cases:
        capsys.readouterr()
        assert main([*args, "--out", str(out)]) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err, (args, err)
    other = tmp_path / "other"
    other.mkdir()
    write_settings(other, {"views": 8, "split": "val", "size": 16, "images": ["phantom-1"],
                           "dataset": None})
    with pytest.raises(InputError, match="other data settings"):
        run_sweep(grid, other, **DATA)


def test_ray_backend_is_an_optional_dependency(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(InputError, match="distributed"):
        run_sweep(grid_file(tmp_path / "g.toml", [0.1]), tmp_path / "s", **DATA, backend="ray")


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="the Ray backend needs bayes_inr[distributed]")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_backend_gives_the_local_table(tmp_path, local_ray):
    grid = grid_file(tmp_path / "g.toml", [0.1, 0.3])
    local = run_sweep(grid, tmp_path / "local", **DATA, log=lambda _: None)
    remote = run_sweep(grid, tmp_path / "ray", **DATA, backend="ray", workers=2,
                       log=lambda _: None)
    assert local_ray.is_initialized()  # the backend leaves a running instance alone
    assert [row["trial_id"] for row in remote] == [row["trial_id"] for row in local]
    assert [row["status"] for row in remote] == ["ok", "ok"]
    for name in METRICS:
        np.testing.assert_allclose([row[name] for row in remote],
                                   [row[name] for row in local], rtol=1e-6, err_msg=name)
    assert [row["config"] for row in read_table(tmp_path / "ray")] == [
        row["config"] for row in local]


def fake_rows():
    """A table of 4 activations x depths x dropouts with known PSNR."""
    rows = []
    for activation in ("relu", "sine", "tanh"):
        for depth in (3, 6):
            for dropout in (0.2, 0.5, 0.8):
                changes = {"activation": activation, "depth": depth, "dropout": dropout}
                psnr = 20 + depth - 10 * dropout + (activation == "sine")
                rows.append(dict.fromkeys(METRICS, 0.1) | {
                             "trial_id": f"{activation}{depth}{dropout}", "status": "ok",
                             "psnr": psnr, "ssim": 0.5, "crps_object": 0.1 - psnr / 1000,
                             "nll_object": -dropout, "seconds": 1.0, "n_images": 5,
                             "diverged": 0, "error": "", "changes": changes,
                             "config": dataclasses.asdict(FitConfig(**changes))})
    return rows


def test_rank_writes_the_top_unique_validation_configs(tmp_path):
    sweep, models = tmp_path / "mcd_grid", tmp_path / "models"
    sweep.mkdir()
    models.mkdir()
    rows = fake_rows()
    best = rows[9] | {"config": rows[9]["config"] | {"seed": 9}, "trial_id": "copy"}
    tie = rows[9] | {"crps_object": rows[9]["crps_object"] - 1e-4, "trial_id": "tie",
                     "config": rows[9]["config"] | {"omega0": 3.0}}
    sharp = rows[9] | {"psnr": 40.0, "crps_object": 0.5, "trial_id": "sharp",
                       "config": rows[9]["config"] | {"omega0": 9.0}}
    failed = rows[0] | {"status": "failed", "psnr": math.nan, "crps_object": math.nan,
                        "trial_id": "bad"}
    write_table(sweep, [*rows, best, sharp, tie, failed])
    write_settings(sweep, {"views": 20, "split": "val", "size": None, "dataset": "b.nc",
                           "images": ["phantom-0", "phantom-1"]})
    ranked = rank(sweep, 3)
    # object CRPS ranks first: the sharp trial's best PSNR (40 dB) does not save its CRPS;
    # sine, depth 6, dropout 0.2 (25 dB) is next best, its seed-only copy counts once, and
    # its variant "tie" (same PSNR, slightly lower CRPS) goes before it
    assert [row["trial_id"] for row in ranked] == ["tie", "sine60.2", "relu60.2"]
    assert rank(sweep)[-1]["trial_id"] == "sharp"
    paths = write_configs(ranked, models, sweep)
    assert [p.name for p in paths] == [f"mcd_grid_top{k}.toml" for k in (1, 2, 3)]
    assert load_config(paths[0]) == FitConfig(activation="sine", depth=6, dropout=0.2,
                                              omega0=3.0)
    assert "object CRPS 0.0749, PSNR 25.00 dB" in paths[0].read_text().splitlines()[0]

    (tmp_path / "test_sweep").mkdir()
    write_settings(tmp_path / "test_sweep", {"split": "test"})
    with pytest.raises(InputError, match="only validation sweeps"):
        rank(tmp_path / "test_sweep")


def test_rank_pools_sweeps_of_the_same_data_and_refuses_others(tmp_path, capsys):
    rows = fake_rows()
    settings = {"views": 20, "split": "val", "size": None, "dataset": "b.nc",
                "images": ["phantom-0", "phantom-1"]}
    coarse, fine, other = (tmp_path / name for name in ("coarse", "fine", "other"))
    for sweep, part in ((coarse, rows[::2]), (fine, rows[1::2]), (other, rows)):
        sweep.mkdir()
        write_table(sweep, part)
    write_settings(coarse, settings)
    write_settings(fine, settings)
    write_settings(other, settings | {"views": 5})
    pooled = rank([coarse, fine])
    assert [row["trial_id"] for row in pooled] == [row["trial_id"] for row in rank_rows(rows)]
    assert len(pooled) == len(rows)
    assert {row["sweep"] for row in pooled} == {coarse, fine}
    models = tmp_path / "models"
    models.mkdir()
    assert main(["--rank", str(coarse), str(fine), "--top", "2",
                 "--write-configs", str(models)]) == 0
    header = (models / "coarse_top1.toml").read_text().splitlines()
    assert f"of sweeps {coarse}, {fine} (trial" in header[0]
    assert header[1].endswith(f"--rank {coarse} {fine} --write-configs {models}")
    assert main(["--rank", str(coarse), str(other)]) == 2
    assert "sweeps of different data" in capsys.readouterr().err


def rank_rows(rows):
    """``rows`` in rank order, by hand: object CRPS up, then PSNR down."""
    return sorted(rows, key=lambda r: (r["crps_object"], -r["psnr"]))


def test_boxplots(tmp_path):
    from bayes_inr.plots.boxplots import boxplot_figure

    path = boxplot_figure(fake_rows(), tmp_path / "box.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(InputError, match="no finished trials"):
        boxplot_figure([], tmp_path / "none.png")
