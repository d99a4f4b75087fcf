"""Mixtures of runs and stacking on validation: weights, closed forms, refusals, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bayes_inr import posterior
from bayes_inr.core.errors import InputError
from bayes_inr.data.benchmark import benchmark_sample, build_benchmark, write_dataset
from bayes_inr.evaluation import metrics
from bayes_inr.evaluation.stacking import (
    FORMAT,
    apply_stack,
    fit_stack,
    grid_scores,
    load_stack,
    save_stack,
    simplex_grid,
)
from bayes_inr.stack import main

N, V, D = 8, 3, 12
ANGLES = np.linspace(0.0, np.pi, V, endpoint=False)


def run(images, truth, method="mcd", sinogram=None, **kwargs):
    return posterior.build(images, sinogram=np.ones((V, D)) if sinogram is None else sinogram,
                           angles=ANGLES, ground_truth=truth, method=method,
                           config={"inference": method}, **kwargs)


def test_mixture_weights_follow_the_components_and_their_chains(tmp_path):
    """An ensemble of a 1-draw and a 4-draw member (1/2 each) mixed at 0.3 with a
    two-chain sampler run (5 draws each) at 0.7: members weigh 0.15, chains 0.35, spread
    over their draws; the file keeps them."""
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.2, 0.8, (N, N))
    ens = run([truth[None] + 0.1, truth + 0.05 * rng.standard_normal((4, N, N))], truth,
              chain_labels=["m0", "m1"], method="DE-2")
    sampler = run(truth + 0.02 * rng.standard_normal((2, 5, N, N)), truth, method="btv")
    mixed = posterior.load(posterior.save(posterior.mix([ens, sampler], [0.3, 0.7],
                                                        ["DE-2", "BTV"]), tmp_path / "m.nc"))
    w = posterior.draw_weights(mixed)
    np.testing.assert_allclose(w, np.r_[0.15, np.full(4, 0.15 / 4), np.full(10, 0.07)])
    assert list(mixed.posterior_predictive["member"].values) == [
        "DE-2/m0", "DE-2/m1", "BTV/chain0", "BTV/chain1"]
    mean = np.tensordot(w, posterior.image_draws(mixed), axes=1)
    expect = (0.3 * np.tensordot(posterior.draw_weights(ens), posterior.image_draws(ens), 1)
              + 0.7 * posterior.image_draws(sampler).mean(axis=0))
    np.testing.assert_allclose(mean, expect)
    assert posterior.run_attrs(mixed)["method"] == "mixture(DE-2 0.3, BTV 0.7)"
    # a component of weight 0 is left out
    alone = posterior.mix([ens, sampler], [0.0, 1.0], ["DE-2", "BTV"])
    np.testing.assert_array_equal(posterior.image_draws(alone), posterior.image_draws(sampler))


def test_a_mixture_is_recalibrated_with_its_weights():
    """The calibration of a mixture pools residuals under the mixture's weights, not equal
    weights per draw."""
    from bayes_inr.evaluation.recalibration import calibrate, residuals

    rng = np.random.default_rng(6)
    truth = rng.uniform(0.2, 0.8, (N, N))
    a = run(truth + 0.02 * rng.standard_normal((1, 40, N, N)), truth)
    b = run(truth + 0.1 + 0.02 * rng.standard_normal((1, 10, N, N)), truth, "tv")
    mixed = posterior.mix([a, b], [0.5, 0.5], ["A", "B"])
    draws = posterior.image_draws(mixed)
    weights = np.r_[np.full(40, 0.5 / 40), np.full(10, 0.5 / 10)]  # not 1/50 each
    z = residuals(draws, truth, weights)
    assert not np.allclose(z, residuals(draws, truth))
    cal = calibrate([mixed], vouch=True, floor="none")
    np.testing.assert_allclose(cal.z_quantiles, np.quantile(z, cal.levels, method="weibull"))


def test_mixture_crps_of_two_point_estimates_is_the_closed_form():
    """CRPS of w delta_a + (1 - w) delta_b at y: w|a - y| + (1 - w)|b - y| - w(1 - w)|a - b|;
    with a = y + d and b = y - d the mixture's mean is y and its CRPS |d|(1 - 2w(1 - w))."""
    rng = np.random.default_rng(1)
    truth = rng.uniform(0.2, 0.8, (N, N))
    d = 0.05 * rng.standard_normal((N, N))
    a, b = run((truth + d)[None, None], truth), run((truth - d)[None, None], truth, "tv")
    for w in (0.0, 0.3, 0.5):
        mixed = posterior.mix([a, b], [w, 1 - w], ["A", "B"])
        got = metrics.score(mixed)["crps_all"]
        closed = np.mean(np.abs(d) * (1 - 2 * w * (1 - w)))
        assert got == pytest.approx(closed, rel=1e-9)
    rows = grid_scores([posterior.image_draws(a), posterior.image_draws(b)],
                       [np.ones(1), np.ones(1)], truth, simplex_grid(2, 0.5))
    mask = metrics.support_masks(truth)["object"]
    assert rows[1]["crps_object"] == pytest.approx(0.5 * np.mean(np.abs(d)[mask]))
    assert rows[1]["psnr"] > 100  # the mean is the truth (to float32 storage)


def test_mixture_refuses_bad_weights_and_other_data():
    rng = np.random.default_rng(2)
    truth = rng.uniform(0.2, 0.8, (N, N))
    a, b = run(truth[None, None], truth), run(truth[None, None], truth, "tv")
    other = run(truth[None, None], truth, sinogram=np.zeros((V, D)))
    with pytest.raises(InputError, match="sum to 1"):
        posterior.mix([a, b], [0.5, 0.6], ["A", "B"])
    with pytest.raises(InputError, match="non-negative"):
        posterior.mix([a, b], [1.5, -0.5], ["A", "B"])
    with pytest.raises(InputError, match="one weight and one label"):
        posterior.mix([a, b], [1.0], ["A"])
    with pytest.raises(InputError, match="same data"):
        posterior.mix([a, other], [0.5, 0.5], ["A", "B"])
    moved = run(truth[None, None], truth + 0.1)
    with pytest.raises(InputError, match="same data"):
        posterior.mix([a, moved], [0.5, 0.5], ["A", "B"])


def test_simplex_grid():
    two, three = simplex_grid(2), simplex_grid(3)
    assert two.shape == (11, 2) and three.shape == (66, 3)
    for grid in (two, three):
        np.testing.assert_allclose(grid.sum(axis=1), 1.0)
        assert (grid >= 0).all()
    np.testing.assert_allclose(simplex_grid(2, 0.5), [[0, 1], [0.5, 0.5], [1, 0]])
    with pytest.raises(InputError, match="divide 1"):
        simplex_grid(2, 0.3)


def images(rng, n, bias_b):
    """Validation images: component A is the truth plus noise; B the truth minus A's error
    (``bias_b`` False) or plus a constant bias (True)."""
    out = []
    for _ in range(n):
        truth = rng.uniform(0.2, 0.8, (N, N))
        e = 0.05 * rng.standard_normal((N, N))
        sinogram = rng.standard_normal((V, D))
        b = truth + 0.2 if bias_b else truth - e
        out.append([run((truth + e)[None, None], truth, sinogram=sinogram),
                    run(b[None, None], truth, "tv", sinogram=sinogram)])
    return out


def closed_form_choice(val) -> float:
    """A's weight minimising the mean object CRPS of w delta_a + (1 - w) delta_b over the
    grid, from the closed form (PSNR breaks no tie here)."""
    grid = simplex_grid(2)[:, 0]
    crps = np.zeros(grid.size)
    for a_run, b_run in val:
        truth = a_run.constant_data["ground_truth"].values
        obj = truth > 0
        a, b = (posterior.image_draws(r)[0][obj] for r in (a_run, b_run))
        y = truth[obj]
        crps += [np.mean(w * abs(a - y) + (1 - w) * abs(b - y) - w * (1 - w) * abs(a - b))
                 for w in grid]
    return float(grid[np.argmin(crps)])


def test_stack_picks_the_weights_the_closed_form_says():
    """Opposite errors: the half-half mixture is best. A biased second method still gets a
    little weight (mass above every pixel helps where the truth is above A): the grid
    point the closed form picks, not 0."""
    rng = np.random.default_rng(3)
    val = images(rng, 3, False)
    stack = fit_stack(val, ["A", "B"], vouch=True)
    assert stack.weights == (0.5, 0.5) == (closed_form_choice(val), 0.5)
    assert len(stack.grid) == 11 and not stack.split_verified
    val = images(rng, 3, True)
    biased = fit_stack(val, ["A", "B"], vouch=True)
    assert biased.weights[0] == pytest.approx(closed_form_choice(val)) and \
        0.5 < biased.weights[0] < 1
    # each image alone: the choices disagree when the images do
    mixed = [images(rng, 1, False)[0], val[0]]
    choices = fit_stack(mixed, ["A", "B"], vouch=True).image_choices()
    assert choices[0] == (0.5, 0.5)
    assert choices[1][0] == pytest.approx(closed_form_choice(val[:1])) != 0.5


def test_stack_refusals():
    rng = np.random.default_rng(4)
    val = images(rng, 2, False)
    with pytest.raises(InputError, match="at least two distinct"):
        fit_stack(val, ["A", "A"], vouch=True)
    with pytest.raises(InputError, match="one run of each"):
        fit_stack([val[0][:1]], ["A", "B"], vouch=True)
    with pytest.raises(InputError, match="no --dataset"):
        fit_stack(val, ["A", "B"])
    with pytest.raises(InputError, match="same data"):
        fit_stack([val[0], val[0]], ["A", "B"], vouch=True)
    swapped = [[val[0][0], val[0][1]], [val[1][1], val[1][0]]]
    with pytest.raises(InputError, match="differ in"):
        fit_stack(swapped, ["A", "B"], vouch=True)
    stack = fit_stack(val, ["A", "B"], vouch=True)
    new = images(rng, 1, False)[0]
    apply_stack(stack, new)
    with pytest.raises(InputError, match="validation images"):
        apply_stack(stack, val[0])
    with pytest.raises(InputError, match="another method"):
        apply_stack(stack, new[::-1])
    with pytest.raises(InputError, match="mixes 2 components"):
        apply_stack(stack, new[:1])


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A tiny benchmark (ids 0-4 validation, 5 test) and two methods' runs of it."""
    folder = tmp_path_factory.mktemp("stack")
    dataset = build_benchmark(size=16, views=(4,), n_phantoms=6)
    path = write_dataset(dataset, folder / "bench.nc")
    rng = np.random.default_rng(5)
    runs = {"mcd": {}, "btv": {}}
    for image_id in range(6):
        sample = benchmark_sample(dataset, image_id, 4)
        truth = sample.ground_truth
        e = 0.05 * rng.standard_normal(truth.shape)
        for method, centre in (("mcd", truth + e), ("btv", truth - e)):
            draws = centre + 0.02 * rng.standard_normal((20, *truth.shape))
            idata = posterior.build(draws[None], sinogram=sample.sinogram,
                                    angles=sample.geometry.angles, method=method,
                                    config={"inference": method}, ground_truth=truth)
            runs[method][image_id] = posterior.save(idata, folder / f"{method}_{image_id}.nc")
    return {"dataset": dataset, "path": path, "runs": runs, "folder": folder}


def test_cli_round_trip(bench, capsys):
    folder, runs = bench["folder"], bench["runs"]
    out, mixed = folder / "stack.json", folder / "mixed_5.nc"
    argv = ["fit", "--component", "MCD", *(str(runs["mcd"][i]) for i in range(5)),
            "--component", "BTV", *(str(runs["btv"][i]) for i in range(5)),
            "--dataset", str(bench["path"]), "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "<- chosen" in printed
    content = json.loads(out.read_text())
    assert content["format"] == FORMAT and content["split_verified"]
    assert content["labels"] == ["MCD", "BTV"] and content["n_images"] == 5
    stack, _ = load_stack(out)
    assert stack.weights == (0.5, 0.5)
    assert [r[0]["image_id"] for r in stack.runs] == list(range(5))
    save_stack(stack, folder / "again.json")
    assert load_stack(folder / "again.json")[0] == stack
    assert main(["apply", str(runs["mcd"][5]), str(runs["btv"][5]), "--stack", str(out),
                 "--out", str(mixed)]) == 0
    assert "object" in capsys.readouterr().out
    result = posterior.load(mixed)
    raw = [metrics.score(posterior.load(runs[m][5]))["crps_object"] for m in runs]
    assert metrics.score(result)["crps_object"] < min(raw)
    assert posterior.run_attrs(result)["data_hash"] == posterior.run_attrs(
        posterior.load(runs["mcd"][5]))["data_hash"]


@pytest.mark.parametrize("case, message", [
    ("test", "test split"), ("unknown", "cannot establish"), ("uneven", "one run per"),
    ("no runs", "names no run files"), ("validation", "validation images"),
    ("bad file", "not JSON"), ("missing", "not found"), ("exists", "exists"),
])
def test_cli_bad_input_is_one_line_and_exit_2(bench, capsys, case, message):
    folder, runs = bench["folder"], bench["runs"]
    good = folder / "cli_stack.json"
    if not good.exists():
        assert main(["fit", "--component", "MCD", *(str(runs["mcd"][i]) for i in range(3)),
                     "--component", "BTV", *(str(runs["btv"][i]) for i in range(3)),
                     "--vouch-validation", "--out", str(good)]) == 0
    (folder / "bad.json").write_text("{not json")
    fit = ["fit", "--out", str(folder / f"{case}.json")]
    argv = {
        "test": [*fit, "--component", "MCD", str(runs["mcd"][5]), "--component", "BTV",
                 str(runs["btv"][5]), "--dataset", str(bench["path"])],
        "unknown": [*fit, "--component", "MCD", str(runs["mcd"][0]), "--component", "BTV",
                    str(runs["btv"][0])],
        "uneven": [*fit, "--component", "MCD", str(runs["mcd"][0]), str(runs["mcd"][1]),
                   "--component", "BTV", str(runs["btv"][0]), "--vouch-validation"],
        "no runs": [*fit, "--component", "MCD", "--component", "BTV", str(runs["btv"][0])],
        "validation": ["apply", str(runs["mcd"][0]), str(runs["btv"][0]), "--stack",
                       str(good), "--out", str(folder / "v.nc")],
        "bad file": ["apply", str(runs["mcd"][5]), str(runs["btv"][5]), "--stack",
                     str(folder / "bad.json"), "--out", str(folder / "b.nc")],
        "missing": ["apply", str(folder / "nope.nc"), str(runs["btv"][5]), "--stack",
                    str(good), "--out", str(folder / "m.nc")],
        "exists": ["fit", "--component", "MCD", str(runs["mcd"][0]), "--component", "BTV",
                   str(runs["btv"][0]), "--vouch-validation", "--out", str(good)],
    }[case]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err
