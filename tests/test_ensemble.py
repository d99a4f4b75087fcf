"""Deep ensembles: members as chains, a MAP member as one draw, the pooled mixture scored."""

import json

import numpy as np
import pytest

from bayes_inr import posterior
from bayes_inr.core.errors import InputError
from bayes_inr.core.provenance import config_hash
from bayes_inr.data.sample import phantom_sample
from bayes_inr.evaluation import metrics
from bayes_inr.fit import main
from bayes_inr.inference.config import FitConfig
from bayes_inr.inference.ensemble import (
    fit_ensemble,
    member_configs,
    member_scores,
    spread_exponents,
)
from bayes_inr.inference.fit import fit

TINY = {"depth": 2, "width": 16, "steps": 40, "lr": 1e-2, "draws": 4, "dropout": 0.2,
        "head": "sigmoid", "threads": 1}


@pytest.fixture(scope="module")
def sample16():
    return phantom_sample(0, 12, 16)


def test_members_are_chains_and_the_mixture_pools_their_draws(sample16):
    base = FitConfig(inference="mcd", **TINY)
    members = [base, base.replace(inference="map"), base.replace(dropout=0.4, draws=3)]
    # two worker processes: the same draws as fitting each member alone with seed 5 + k
    idata = fit_ensemble(sample16, base.replace(inference="ensemble", seed=5, workers=2),
                         members, progress=False)
    alone = [posterior.image_draws(fit(sample16, m.replace(seed=5 + k), progress=False))
             for k, m in enumerate(members)]
    pp = idata.posterior_predictive
    assert pp.attrs["method"] == "DE-3"
    assert list(pp["member"].values) == ["member0-mcd", "member1-map", "member2-mcd"]
    assert pp["n_draws"].values.tolist() == [4, 1, 3]  # the MAP member is one draw
    stored = [json.loads(text) for text in pp["member_config"].values]
    assert [(c["inference"], c["seed"], c["dropout"]) for c in stored] == [
        ("mcd", 5, 0.2), ("map", 6, 0.2), ("mcd", 7, 0.4)]
    assert posterior.config(idata)["member_configs"] == stored
    pooled = np.concatenate(alone)
    np.testing.assert_array_equal(posterior.image_draws(idata), pooled)
    result, truth = metrics.score(idata), sample16.ground_truth
    assert result["n_draws"] == 8
    # an equally weighted mixture: each member 1/3 whatever its draw count
    weights = np.concatenate([np.full(4, 1 / 12), [1 / 3], np.full(3, 1 / 9)])
    np.testing.assert_allclose(posterior.draw_weights(idata), weights)
    mixture = sum(a.mean(0) for a in alone) / 3
    assert result["psnr"] == pytest.approx(metrics.psnr(mixture, truth))
    assert result["nll_all"] == pytest.approx(metrics.nll(pooled, truth, weights=weights))
    assert result["ece_all"] == pytest.approx(metrics.ece(pooled, truth, weights=weights))
    # the mixture is wider than its members
    assert pooled.std(0).mean() > max(a.std(0).mean() for a in alone)
    scores = member_scores(idata)
    assert [s["n_draws"] for s in scores] == [4, 1, 3]
    assert scores[1]["psnr"] == pytest.approx(metrics.psnr(alone[1][0], truth))


def test_ensemble_config_checks():
    with pytest.raises(InputError, match="member_inference"):
        FitConfig(inference="ensemble", member_inference="nuts")
    with pytest.raises(InputError, match="members must be positive"):
        FitConfig(inference="ensemble", members=0)
    with pytest.raises(InputError, match="not hmc"):
        fit_ensemble(phantom_sample(0, 4, 8), FitConfig(inference="ensemble"),
                     [FitConfig(inference="hmc")], progress=False)


def test_member_tv_spread_samples_a_log_uniform_hyperprior():
    u = spread_exponents(16)
    # member 0 keeps the configuration's weight; every first 2^j members cover [-1, 1) evenly
    assert u[:4].tolist() == [0.0, -1.0, 0.5, -0.5]
    for n in (2, 4, 8, 16):
        np.testing.assert_allclose(np.sort(u[:n]), -1 + 2 * np.arange(n) / n)
    base = FitConfig(inference="ensemble", members=4, tv_weight=1e-4, init="tv", seed=3)
    spread = member_configs(base.replace(member_tv_spread=9.0))
    np.testing.assert_allclose([m.tv_weight for m in spread], [1e-4, 1e-4 / 9, 3e-4, 1e-4 / 3])
    assert [m.seed for m in spread] == [3, 4, 5, 6]
    assert {m.member_tv_spread for m in spread} == {1.0}
    # spread 1 is today's ensemble, hash included; another spread is another configuration
    plain = member_configs(base)
    assert [m.tv_weight for m in plain] == [1e-4] * 4
    assert config_hash(base.replace(member_tv_spread=1.0)) == config_hash(base)
    assert config_hash(spread[0]) == config_hash(plain[0])
    assert config_hash(base.replace(member_tv_spread=9.0)) != config_hash(base)
    for bad in (0.5, float("inf"), float("nan")):
        with pytest.raises(InputError, match="finite number >= 1"):
            base.replace(member_tv_spread=bad)
    with pytest.raises(InputError, match="needs --inference ensemble and --tv-weight"):
        FitConfig(inference="mcd", tv_weight=1e-4, member_tv_spread=2.0)
    with pytest.raises(InputError, match="needs --inference ensemble and --tv-weight"):
        FitConfig(inference="ensemble", member_tv_spread=2.0)


def test_cli_ensembles(tmp_path, capsys):
    data = ["--size", "16", "--views", "12", "--quiet"]
    tiny = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    out = tmp_path / "de.nc"
    assert main([*data, *tiny, "--config", "none", "--inference", "ensemble", "--members", "2",
                 "--member-inference", "map", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "member1-map" in text and "DE-2" in text
    assert posterior.image_draws(posterior.load(out)).shape == (2, 16, 16)

    configs = []
    for k, inference in enumerate(["mcd", "map"]):
        configs.append(tmp_path / f"m{k}.toml")
        configs[-1].write_text(f'inference = "{inference}"\n' + "".join(
            f"{k} = {json.dumps(v)}\n" for k, v in TINY.items()))
    capsys.readouterr()
    assert main([*data, "--member-configs", *map(str, configs), "--threads", "1",
                 "--out", str(out)]) == 2  # exists: refused before any work
    assert "--overwrite" in capsys.readouterr().err
    assert main([*data, "--member-configs", *map(str, configs), "--threads", "1",
                 "--out", str(out), "--overwrite"]) == 0
    idata = posterior.load(out)
    assert idata.posterior_predictive["n_draws"].values.tolist() == [4, 1]
    assert posterior.config(idata)["inference"] == "ensemble"

    hmc = tmp_path / "hmc.toml"
    hmc.write_text('inference = "hmc"\n')
    for bad in (["--member-configs", str(configs[0]), "--inference", "map"],
                ["--member-configs", str(configs[0]), "--members", "3"],
                ["--member-configs", str(hmc)],
                ["--inference", "ensemble", "--member-inference", "hmc"]):
        capsys.readouterr()
        assert main([*data, *bad, "--out", str(out), "--overwrite"]) == 2, bad
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err, (bad, err)
