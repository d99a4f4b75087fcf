"""CUDA: fits, samplers and the Radon operator on the GPU (skipped without one), and
``analysis/gpu_check.py`` (its exit without CUDA, its utilisation sampler, a CPU smoke run)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bayes_inr import posterior
from bayes_inr.data.sample import phantom_sample
from bayes_inr.inference import mcmc as hmc
from bayes_inr.inference.config import FitConfig
from bayes_inr.inference.fit import fit
from bayes_inr.model.ctmodel import UnitMasks
from bayes_inr.physics.geometry import Geometry
from bayes_inr.physics.radon import RadonOperator

ROOT = Path(__file__).resolve().parent.parent
GPU_CHECK = ROOT / "analysis" / "gpu_check.py"
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SVI = {"depth": 2, "width": 16, "omega0": 1.0, "steps": 20, "lr": 1e-2, "draws": 4}
MCMC = {"depth": 1, "width": 8, "omega0": 1.0, "sigma": 0.1, "steps": 20, "lr": 1e-2,
        "warmup": 10, "draws": 6, "num_steps": 3, "max_tree_depth": 4, "tv_weight": 1.0,
        "checkpoint_every": 2}


@pytest.fixture(scope="module")
def sample16():
    return phantom_sample(0, 5, 16)


# ----------------------------------------------------------------------------- on CUDA


@cuda
def test_radon_on_cuda_equals_cpu():
    geometry = Geometry(24, 7)
    cpu, gpu = RadonOperator(geometry), RadonOperator(geometry, device="cuda")
    assert gpu.device.type == "cuda" and RadonOperator(geometry).to("cuda").device.type == "cuda"
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(3, 24, 24, generator=gen)
    sinograms = torch.rand(3, *geometry.sino_shape, generator=gen)
    torch.testing.assert_close(gpu(images.cuda()).cpu(), cpu(images), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gpu.adjoint(sinograms.cuda()).cpu(), cpu.adjoint(sinograms),
                               rtol=1e-5, atol=1e-5)
    x = images.cuda().requires_grad_()
    (gpu(x) * sinograms.cuda()).sum().backward()  # the gradient is the adjoint
    torch.testing.assert_close(x.grad.cpu(), cpu.adjoint(sinograms), rtol=1e-5, atol=1e-5)
    assert gpu.norm_squared(iterations=20) == pytest.approx(cpu.norm_squared(iterations=20),
                                                             rel=1e-4)


@cuda
def test_unit_masks_on_cuda():
    masks = UnitMasks(0.9, (4096, 32), device=torch.device("cuda"))
    draw = masks.sample((2,))
    assert draw.device.type == "cuda" and draw.dtype == torch.float32
    assert draw.shape == (2, 4096, 32) and set(draw.unique().tolist()) <= {0.0, 1.0}
    assert float(draw.mean()) == pytest.approx(masks.keep, abs=0.01)


@cuda
@pytest.mark.parametrize("inference, extra", [
    ("map", {}), ("bbb", {}), ("mcd", {"dropout_scope": "pixel"}),
    ("mcd", {"dropout_scope": "image", "infer_sigma": True, "tv_weight": 1.0})])
def test_svi_fit_on_cuda(sample16, inference, extra):
    config = FitConfig(inference=inference, device="cuda", **SVI, **extra)
    idata = fit(sample16, config, progress=False)
    images = posterior.image_draws(idata)
    assert images.shape == ((1 if inference == "map" else 4), 16, 16)
    assert np.isfinite(images).all()
    assert idata.posterior_predictive.attrs["device"] == "cuda"
    assert "diverged_at_step" not in posterior.config(idata)


@cuda
def test_map_on_cuda_matches_cpu(sample16):
    config = FitConfig(inference="map", **SVI)
    on_cpu = posterior.image_draws(fit(sample16, config, progress=False))
    on_gpu = posterior.image_draws(fit(sample16, config.replace(device="cuda"), progress=False))
    np.testing.assert_allclose(on_gpu, on_cpu, atol=2e-3)


@cuda
@pytest.mark.parametrize("inference", ["nuts", "hmc"])
def test_mcmc_on_cuda(sample16, tmp_path, inference):
    config = FitConfig(inference=inference, device="cuda", infer_sigma=True,
                       save_params=True, **MCMC)
    path = tmp_path / "run.nc"
    idata = fit(sample16, config, progress=False, out=path)
    images = posterior.image_draws(idata)
    assert images.shape == (6, 16, 16) and np.isfinite(images).all()
    stats = idata.sample_stats
    assert (stats["n_steps"].values > 0).all() and np.isfinite(stats["lp"].values).all()
    assert "mcmc_rng_cuda" in idata.constant_data
    saved = posterior.load(path)
    np.testing.assert_array_equal(saved.posterior_predictive["image"].values,
                                  idata.posterior_predictive["image"].values)


@cuda
def test_flat_potential_on_cuda_equals_cpu(sample16):
    from bayes_inr.inference.single import build_model

    config = FitConfig(inference="nuts", infer_sigma=True, **MCMC)
    cpu = hmc.FlatPotential(build_model(sample16, config))
    gpu = hmc.FlatPotential(build_model(sample16, config.replace(device="cuda")))
    theta = cpu.initial(0)
    value, grad = cpu.value_and_grad(theta)
    value_gpu, grad_gpu = gpu.value_and_grad(theta.cuda())
    torch.testing.assert_close(value_gpu.cpu(), value, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(grad_gpu.cpu(), grad, rtol=1e-3, atol=1e-3)


def _interrupted_nuts(sample, config, path, monkeypatch, after: int):
    """A NUTS run to ``path`` stopped by Ctrl-C inside the transition after ``after`` draws."""
    kept = {"n": 0}
    keep, call = hmc.Chain.keep, hmc.FlatPotential.__call__

    def counting_keep(self, *args):
        kept["n"] += 1
        keep(self, *args)

    def interrupt(self, z):
        if kept["n"] == after:
            raise KeyboardInterrupt
        return call(self, z)

    monkeypatch.setattr(hmc.Chain, "keep", counting_keep)
    monkeypatch.setattr(hmc.FlatPotential, "__call__", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fit(sample, config, progress=False, out=path)
    monkeypatch.undo()
    return posterior.load(path)


@cuda
def test_resume_on_cuda_continues(sample16, tmp_path, monkeypatch):
    config = FitConfig(inference="nuts", device="cuda", init="prior", **MCMC)
    path = tmp_path / "run.nc"
    partial = _interrupted_nuts(sample16, config, path, monkeypatch, after=3)
    assert partial.constant_data["mcmc_draws"].values.tolist() == [3]
    done = fit(sample16, config, progress=False, resume=partial, out=path)
    assert done.constant_data["mcmc_draws"].values.tolist() == [6]
    assert np.isfinite(posterior.image_draws(done)).all()


@cuda
def test_resume_on_cuda_reproduces_the_draws(sample16, tmp_path, monkeypatch):
    """hmc.py's promise (same device, same threads: the same draws) on CUDA, where the
    CUDA generator's state is restored too."""
    config = FitConfig(inference="nuts", device="cuda", init="prior", **MCMC)
    whole = fit(sample16, config, progress=False)
    partial = _interrupted_nuts(sample16, config, tmp_path / "run.nc", monkeypatch, after=3)
    done = fit(sample16, config, progress=False, resume=partial)
    np.testing.assert_array_equal(done.sample_stats["n_steps"].values,
                                  whole.sample_stats["n_steps"].values)
    np.testing.assert_allclose(done.posterior_predictive["image"].values,
                               whole.posterior_predictive["image"].values, atol=1e-5)


@cuda
def test_gop_hmc_on_cuda(sample16):
    config = FitConfig(inference="hmc", model="gop", head="sigmoid", device="cuda",
                       **MCMC | {"init": "map"})
    images = posterior.image_draws(fit(sample16, config, progress=False))
    assert images.shape == (6, 16, 16) and np.isfinite(images).all()
    assert ((images > 0) & (images < 1)).all()


@cuda
def test_exact_posterior_on_cuda_equals_cpu(sample16):
    from bayes_inr.inference.single import build_model

    config = FitConfig(inference="nuts", depth=0, width=8, n_features=4, omega0=2.0, sigma=0.2)
    cpu = hmc.exact_posterior(hmc.FlatPotential(build_model(sample16, config)))
    gpu = hmc.exact_posterior(hmc.FlatPotential(build_model(sample16,
                                                            config.replace(device="cuda"))))
    for a, b in zip(gpu, cpu, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@cuda
def test_ensemble_of_spawned_workers_on_cuda(sample16):
    config = FitConfig(inference="ensemble", members=2, member_inference="mcd", workers=2,
                       device="cuda", **SVI)
    idata = fit(sample16, config, progress=False)
    images = posterior.image_draws(idata)
    assert images.shape == (8, 16, 16) and np.isfinite(images).all()
    assert {c["device"] for c in posterior.config(idata)["member_configs"]} == {"cuda"}


# ----------------------------------------------------------------------------- gpu_check


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", GPU_CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_without_cuda_exits_2_with_one_line(tmp_path):
    env = os.environ | {"CUDA_VISIBLE_DEVICES": ""}  # no GPU, also on a machine with one
    done = subprocess.run([sys.executable, str(GPU_CHECK), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("no CUDA device: ") and done.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_utilisation_sampler():
    module = _gpu_check()
    with module.UtilisationSampler(["echo", "37\n55"], interval=0.01, gpu=1) as sampler:
        while len(sampler.samples) < 3:
            pass
    summary = sampler.summary()
    assert summary["mean_pct"] == summary["median_pct"] == 55 and "error" not in summary
    with module.UtilisationSampler(["false"], interval=0.01) as sampler:
        sampler._thread.join(timeout=10)
    assert sampler.summary()["sampled"] is False
    assert sampler.summary()["error"].startswith("CalledProcessError")
    assert module.UtilisationSampler(enabled=False).summary() == {
        "sampled": False, "why": "not a CUDA device"}


SMOKE = ["--device", "cpu", "--size", "16", "--views", "5", "--steps", "4", "--draws", "2",
         "--nuts-warmup", "3", "--nuts-draws", "2", "--nuts-map-steps", "3",
         "--nuts-tree-depth", "2", "--cpu-steps", "3", "--cpu-threads", "1"]


def test_gpu_check_cpu_smoke_run(tmp_path):
    assert _gpu_check().main(SMOKE + ["--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    assert all(results[part]["ok"] for part in ("env", "mcd", "nuts", "mcd_cpu"))
    assert results["mcd"]["steps_done"] == 4 and results["mcd"]["seconds_per_step"] > 0
    nuts = results["nuts"]
    assert nuts["draws_kept"] == 2 and nuts["grad_evals"] >= nuts["grad_evals_sampling"] > 0
    assert 1 <= nuts["mean_tree_depth"] <= 2 and nuts["config"]["depth"] == 2
    assert results["mcd_cpu"]["threads_used"] == 1
    text = (tmp_path / "gpu_check.txt").read_text()
    for line in ("MCD fit (", "NUTS chain (", "gradient evaluations: ",
                 "MCD on the CPU, first 3 steps, 1 torch threads", "cpu over CPU per step"):
        assert line in text, line
    assert not list(tmp_path.glob(".*.tmp"))


def test_gpu_check_records_a_failing_part_and_goes_on(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("broken on purpose\nsecond line")

    monkeypatch.setattr("bayes_inr.evaluation.metrics.score", broken)
    code = _gpu_check().main(SMOKE + ["--parts", "nuts", "mcd_cpu", "--out", str(tmp_path)])
    assert code == 1
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    assert "mcd" not in results and results["mcd_cpu"]["ok"]
    nuts = results["nuts"]
    assert nuts["ok"] is False and nuts["error"] == "RuntimeError: broken on purpose"
    assert nuts["traceback"][-2:] == ["RuntimeError: broken on purpose", "second line"]
    assert len(nuts["traceback"]) == 12 and "in part_nuts" in "".join(nuts["traceback"])
    assert "nuts: FAILED: RuntimeError: broken on purpose" in (tmp_path / "gpu_check.txt"
                                                               ).read_text()
