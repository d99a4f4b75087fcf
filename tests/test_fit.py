import dataclasses
import math
import sys

import numpy as np
import pytest
import torch
from pyro import poutine

from bayes_inr import posterior
from bayes_inr.core.errors import InputError
from bayes_inr.data.images import example_dicom_path
from bayes_inr.data.sample import phantom_sample
from bayes_inr.evaluation.metrics import psnr, score
from bayes_inr.fit import main
from bayes_inr.inference.baselines.classical import reconstruct
from bayes_inr.inference.config import FitConfig, load_config
from bayes_inr.inference.fit import fit
from bayes_inr.inference.guides import DropoutGuide
from bayes_inr.inference.single import build_model

FAST = {"depth": 3, "width": 128, "omega0": 1.0, "steps": 300, "lr": 3e-3, "lr_final": 1.0,
        "draws": 20}


@pytest.fixture(scope="module")
def sample32():
    return phantom_sample(0, 20, 32)


def test_log_likelihood_is_the_gaussian_density(sample32):
    model = build_model(sample32, FitConfig(inference="map", depth=1, width=8, sigma=0.05))
    params = model.inr.init_params(0)
    trace = poutine.trace(poutine.condition(model, data=params)).get_trace()
    trace.compute_log_prob()
    image = model.inr.render(params)
    residual = sample32.sinogram - model.operator(image).detach().numpy()
    m = residual.size
    expected = -0.5 * np.sum((residual / 0.05) ** 2) - m * math.log(0.05 * math.sqrt(2 * math.pi))
    assert trace.nodes["sinogram"]["log_prob_sum"].item() == pytest.approx(expected, rel=1e-5)
    prior = sum(trace.nodes[name]["log_prob_sum"].item() for name in params)
    manual = sum(torch.distributions.Normal(0, 1).log_prob(v).sum().item() for v in params.values())
    assert prior == pytest.approx(manual, rel=1e-5)


def test_dropout_guide_drops_a_fraction_p_of_units(sample32):
    config = FitConfig(inference="mcd", depth=2, width=64, dropout=0.3)
    model = build_model(sample32, config.replace(dropout_scope="image"))
    guide = DropoutGuide(model, model.inr.init_params(0))
    keep = model.unit_masks()["layer1.mask"].keep  # 0.7 rounded to a multiple of 1/256
    assert keep == pytest.approx(0.7, abs=2e-3)
    draws = guide.sample_params(400)
    w = draws["layer1.weight"]  # (400, 64, 64) = M diag(z) / (1 - p): columns are dropped inputs
    assert (w == 0).all(dim=1).float().mean().item() == pytest.approx(0.3, abs=0.02)
    kept = w[:, 0, :][w[:, 0, :] != 0]
    mean = model.inr.init_params(0)["layer1.weight"][0].expand(400, -1)[w[:, 0, :] != 0]
    torch.testing.assert_close(kept, mean / keep, rtol=1e-4, atol=0)
    assert (draws["layer0.weight"] != 0).all()  # the Fourier embedding is not dropped
    assert not model.mask_sites() and not any(name.endswith("mask") for name in draws)

    model = build_model(sample32, config.replace(dropout_scope="pixel"))
    guide = DropoutGuide(model, model.inr.init_params(0))
    draws = guide.sample_params(400)
    mask = draws["layer1.mask"]  # per pixel units kept; the weight carries 1 / (1 - p)
    assert mask.shape == (400, 32 * 32, 64) and mask.unique().tolist() == [0.0, 1.0]
    assert (mask == 0).float().mean().item() == pytest.approx(0.3, abs=0.02)
    torch.testing.assert_close(draws["layer1.weight"][0], draws["layer1.weight"][1])
    mean = model.inr.init_params(0)["layer1.weight"]
    torch.testing.assert_close(draws["layer1.weight"][0], mean / keep, rtol=1e-4, atol=0)
    # masked inputs times W / (1 - p) = the authors' F.dropout (inputs z h / (1 - p)) times W
    one = {k: v[:1] for k, v in draws.items()}
    h_masks = {k: v for k, v in one.items() if k.endswith("mask")}
    reference = dict(one) | {k: v / keep for k, v in h_masks.items()}
    reference |= {k.replace("mask", "weight"): one[k.replace("mask", "weight")] * keep
                  for k in h_masks}
    torch.testing.assert_close(model.inr.render(one), model.inr.render(reference))
    # per-pixel masks are model sites whose guide is their prior: no KL contribution
    trace = poutine.trace(guide).get_trace()
    model_trace = poutine.trace(poutine.replay(model, trace=trace)).get_trace()
    # the weight sites carry the means M; the model renders F.dropout(h) @ M.T, as trained
    assert torch.equal(trace.nodes["layer1.weight"]["value"], mean)
    masks = {k: trace.nodes[k]["value"] / keep for k in ("layer1.mask", "layer2.mask")}
    means = {k: v for k, v in model.inr.init_params(0).items()}
    torch.testing.assert_close(model_trace.nodes["image"]["value"],
                               model.inr.render(means | masks))
    for name in ("layer1.mask", "layer2.mask"):
        value = trace.nodes[name]["value"]
        torch.testing.assert_close(model_trace.nodes[name]["fn"].log_prob(value),
                                   trace.nodes[name]["fn"].log_prob(value))


def test_map_fit_beats_fbp(sample32):
    idata = fit(sample32, FitConfig(inference="map", **FAST), progress=False)
    assert posterior.image_draws(idata).shape == (1, 32, 32)
    fbp = psnr(reconstruct("fbp", sample32.sinogram, sample32.geometry), sample32.ground_truth)
    assert score(idata)["psnr"] > fbp + 1


def test_mcd_draws_are_reproducible(sample32):
    config = FitConfig(inference="mcd", dropout=0.1, **FAST | {"steps": 50})
    images = posterior.image_draws(fit(sample32, config, progress=False))
    assert images.shape == (20, 32, 32)
    assert images.std(axis=0).mean() > 1e-3
    again = posterior.image_draws(fit(sample32, config, progress=False))
    np.testing.assert_array_equal(images, again)


def test_a_fit_runs_with_its_threads_and_restores_the_count(sample32):
    before = torch.get_num_threads()
    threads = 1 if before > 1 else 2
    config = FitConfig(inference="map", depth=1, width=8, steps=2, threads=threads)
    idata = fit(sample32, config, progress=False)
    assert posterior.config(idata)["threads_used"] == threads
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("scope", ["image", "pixel"])
def test_mcd_infers_sigma(sample32, scope):
    # the dropout guide's scalar sigma once broke Tensor.expand (no sizes) in every step
    config = FitConfig(inference="mcd", infer_sigma=True, dropout_scope=scope, depth=1, width=8,
                       steps=10, lr=1e-2, draws=3)
    idata = fit(sample32, config, progress=False)
    assert np.isfinite(posterior.image_draws(idata)).all()


def test_bbb_with_vanishing_kl_behaves_like_map(sample32):
    config = FitConfig(**FAST)
    map_image = posterior.image_draws(fit(sample32, config.replace(inference="map"), False))[0]
    bbb = posterior.image_draws(fit(sample32, config.replace(inference="bbb", kl_factor=1e-9),
                                    False))
    assert np.abs(bbb.mean(0) - map_image).mean() < 0.03
    assert psnr(bbb.mean(0), sample32.ground_truth) > psnr(map_image, sample32.ground_truth) - 1
    assert bbb.std(0).mean() < 0.005
    wide = posterior.image_draws(fit(sample32, config.replace(inference="bbb", kl_factor=1.0,
                                                              init_scale=0.05), False))
    assert wide.std(0).mean() > 10 * bbb.std(0).mean()


@pytest.mark.xfail(strict=True, reason=(
    "measured: the MCD variance *shrinks* with fewer views, with either mask scope (32 x 32, "
    "p 0.1, 4 vs 24 views: per image 0.0014 vs 0.0021, per pixel 0.0019 vs 0.0021) -- fewer "
    "likelihood terms let the prior's L2 shrink the weights that the masks act on"))
@pytest.mark.parametrize("scope", ["image", "pixel"])
def test_fewer_views_give_larger_mcd_variance(scope):
    config = FitConfig(inference="mcd", dropout=0.1, dropout_scope=scope, **FAST)
    variances = [posterior.image_draws(fit(phantom_sample(1, views, 32), config, False)).var(0)
                 .mean() for views in (4, 24)]
    assert variances[0] > variances[1]


def test_cli_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for field in dataclasses.fields(FitConfig):
        assert "--" + field.name.replace("_", "-") in text
    assert "1 % on both sides" in text and "(default: None)" not in text


def test_cli_end_to_end_and_bad_input(tmp_path, capsys):
    out = tmp_path / "run.nc"
    args = ["--config", "none", "--size", "24", "--views", "6", "--steps", "20", "--draws", "5",
            "--width", "16", "--depth", "1", "--quiet", "--out", str(out)]
    assert main(args) == 0
    assert "psnr" in capsys.readouterr().out
    assert posterior.config(posterior.load(out))["width"] == 16
    # a CT slice's run records its air level (-950 HU), which the object's scores stop at
    ct = tmp_path / "ct.nc"
    assert main([*args[:-1], str(ct), "--image", str(example_dicom_path())]) == 0
    assert posterior.air_level(posterior.load(ct)) == 0.025
    assert posterior.air_level(posterior.load(out)) == 0.0
    bad_sino = tmp_path / "s.npy"
    np.save(bad_sino, np.full((6, 10), np.nan))
    cases = [["--inference", "svgd"], ["--views", "0"], ["--config", str(tmp_path / "no.toml")],
             ["--sinogram", str(bad_sino), "--size", "24"],
             ["--sinogram", str(bad_sino)], ["--dataset", str(tmp_path / "x.nc")],
             ["--image", str(tmp_path / "missing.png")], ["--device", "tpu"],
             ["--inference", "mcd", "--dropout", "0.001"]]
    for extra in cases:
        capsys.readouterr()
        assert main(args + extra) == 2, extra
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err, (extra, err)


def test_dropout_rates_the_masks_cannot_draw_are_refused(sample32):
    """Masks draw at multiples of 1/256: 0.002 and 0.005 are both drawn at 1/256, while a
    rate nearer 0 than 1/512 (which would silently become 1/256 too) is refused."""
    keeps = {p: build_model(sample32, FitConfig(inference="mcd", depth=2, width=8,
                                                dropout=p)).unit_masks()["layer1.mask"].keep
             for p in (0.002, 0.005, 0.01)}
    assert keeps[0.002] == keeps[0.005] == 255 / 256 and keeps[0.01] == 253 / 256
    for p in (1e-4, 0.0019, 0.999):
        with pytest.raises(InputError, match="multiples of 1/256"):
            FitConfig(inference="mcd", dropout=p)
    assert not build_model(sample32, FitConfig(inference="mcd", dropout=0.0)).unit_masks()


def test_config_files(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('inference = "bbb"\nwidth = 64\n')
    assert load_config(path, width=32) == FitConfig(inference="bbb", width=32)
    path.write_text("widht = 64\n")
    with pytest.raises(Exception, match="unknown keys: widht"):
        load_config(path)


def test_model_configs_load():
    from pathlib import Path

    for path in sorted(Path("models").glob("*.toml")):
        load_config(path)


@pytest.mark.parametrize("inference", ["mcd", "nuts"])
def test_progress_bars_only_on_a_terminal(tmp_path, capsys, monkeypatch, inference):
    """Without --quiet a fit logged to a file or pipe writes no bar (no carriage returns)
    but its summary lines; on a terminal the bar is drawn (the control)."""
    args = ["--config", "none", "--inference", inference, "--size", "16", "--views", "8",
            "--width", "8", "--depth", "1", "--steps", "5", "--warmup", "5", "--draws", "4",
            "--max-tree-depth", "3", "--threads", "1"]
    assert main([*args, "--out", str(tmp_path / "piped.nc")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert main([*args, "--out", str(tmp_path / "terminal.nc")]) == 0
    assert "\r" in capsys.readouterr().err


def test_mcd_at_depth_0_drops_fourier_features(sample32):
    """Without a hidden layer the masks drop the Fourier features: one mask per draw folds
    them into the read-out's columns; per-pixel masks render as inverted dropout of the
    embedding, (z * gamma(x)) W^T / (1 - p) + b."""
    config = FitConfig(inference="mcd", depth=0, width=8, n_features=32, dropout=0.3)
    model = build_model(sample32, config.replace(dropout_scope="image"))
    assert list(model.unit_masks()) == ["layer0.mask"]
    keep = model.unit_masks()["layer0.mask"].keep
    draws = DropoutGuide(model, model.inr.init_params(0)).sample_params(400)
    w = draws["layer0.weight"]  # (400, 1, 64)
    assert (w == 0).all(dim=1).float().mean().item() == pytest.approx(0.3, abs=0.02)
    assert model.inr.render(draws).detach().std(0).mean() > 0.01  # not a point
    model = build_model(sample32, config.replace(dropout_scope="pixel"))
    draws = DropoutGuide(model, model.inr.init_params(0)).sample_params(3)
    mask = draws["layer0.mask"]
    assert mask.shape == (3, 32 * 32, 64) and (mask == 0).float().mean() == pytest.approx(
        0.3, abs=0.02)
    mean = model.inr.init_params(0)
    expected = ((model.inr.embedding * mask) @ mean["layer0.weight"].T / keep
                + mean["layer0.bias"]).reshape(3, 32, 32)
    torch.testing.assert_close(model.inr.render(draws), expected, rtol=1e-5, atol=1e-5)


def test_the_fit_command_reports_its_tv_start(tmp_path, capsys):
    """A fit from init tv prints its start's misfit over the TV image's and which of its
    tries it kept; a fit from the network's initial weights prints no such line."""
    args = ["--config", "none", "--inference", "mcd", "--size", "16", "--views", "8",
            "--width", "16", "--depth", "2", "--steps", "3", "--draws", "4", "--threads", "1",
            "--tv-weight", "3e-4", "--tv-units", "objective", "--quiet"]
    assert main([*args, "--init", "tv", "--start-tries", "2",
                 "--out", str(tmp_path / "tv.nc")]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines()
                if line.startswith("start at the TV image"))
    assert "of start_tries 2;" in line
    assert main([*args, "--out", str(tmp_path / "cold.nc")]) == 0
    assert "start at the TV image" not in capsys.readouterr().out
