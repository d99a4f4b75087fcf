"""The registry of inference methods: one class per method, and everything that lists methods
reads the registry (configuration choices, CLI help, dispatch, ensembles, reports); the
defaults are the shipped configurations validated for the method and view count."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_inr.core.errors import InputError
from bayes_inr.data.sample import phantom_sample
from bayes_inr.fit import main, parser
from bayes_inr.inference import method as registry
from bayes_inr.inference.config import FitConfig, field_help, load_config
from bayes_inr.inference.fit import fit
from bayes_inr.inference.method import family_of, get_method, method_names
from bayes_inr.model.catalog import validated
from bayes_inr.posterior import image_draws, run_attrs
from bayes_inr.reports.diagnostics import is_mcmc

SHIPPED = ("map", "bbb", "mcd", "hmc", "nuts", "btv", "ensemble")
TINY = {"depth": 1, "width": 8, "steps": 5, "lr": 1e-2, "draws": 3, "threads": 1}


def define_low_rank():
    """The worked example of docs/howto/add_inference.md (included from here, so it runs)."""
    # --8<-- [start:example]
    from pyro.infer.autoguide import AutoLowRankMultivariateNormal, init_to_value

    from bayes_inr.inference.single import SVIFit

    class LowRank(SVIFit):
        """A Normal guide over all weights with a rank-4-plus-diagonal covariance."""

        name = "lowrank"
        summary = "a Normal guide with low-rank plus diagonal covariance"

        def guide(self, model, init, config):
            return AutoLowRankMultivariateNormal(model, init_loc_fn=init_to_value(values=init),
                                                 init_scale=config.init_scale, rank=4)
    # --8<-- [end:example]
    return LowRank


@pytest.fixture
def low_rank():
    cls = define_low_rank()
    yield cls
    del registry.REGISTRY[cls.name]


def test_the_shipped_methods_and_their_families():
    assert method_names() == SHIPPED
    assert method_names(family="svi") == ("map", "bbb", "mcd")
    assert method_names(family="mcmc") == ("hmc", "nuts", "btv")
    assert method_names(member=True) == ("map", "bbb", "mcd")
    assert [family_of(name) for name in ("mcd", "nuts", "ensemble", "DE-5", "sirt")] == [
        "svi", "mcmc", "mixture", "", ""]


def test_choices_and_help_come_from_the_registry():
    with pytest.raises(InputError, match="choose one of map, bbb, mcd, hmc, nuts, btv, ensemble"):
        FitConfig(inference="svgd")
    text = "".join(parser().format_help().split())  # argparse wraps lines, at hyphens too
    for name in SHIPPED:
        assert "".join(f"{name}: {registry.REGISTRY[name].summary}".split()) in text
    with pytest.raises(InputError, match="member_inference"):
        FitConfig(inference="ensemble", member_inference="nuts")


def test_each_method_checks_its_own_settings():
    with pytest.raises(InputError, match="mcd drops hidden units"):
        FitConfig(inference="mcd", model="gop")
    with pytest.raises(InputError, match="hmc needs num_steps"):
        FitConfig(inference="hmc", num_steps=0)
    FitConfig(inference="nuts", num_steps=0)  # the check is HMC's alone
    FitConfig(inference="map", model="gop")


def test_a_new_method_is_one_class(low_rank):
    assert "lowrank" in method_names(family="svi", member=True)
    assert "lowrank: a Normal guide" in field_help()["inference"]
    sample = phantom_sample(0, 4, 16)
    idata = fit(sample, FitConfig(inference="lowrank", **TINY), progress=False)
    draws = image_draws(idata)
    assert draws.shape == (3, 16, 16) and draws.std(0).mean() > 0  # guide draws differ
    assert run_attrs(idata)["method"] == "lowrank" and not is_mcmc(idata)
    ensemble = fit(sample, FitConfig(inference="ensemble", member_inference="lowrank",
                                     members=2, **TINY), progress=False)
    assert image_draws(ensemble).shape == (6, 16, 16)


def test_the_registry_is_restored_after_the_example(low_rank):
    assert get_method("lowrank").family == "svi"


def test_the_example_is_gone_again():
    assert "lowrank" not in method_names()  # the fixture removed it: other tests see seven


def test_a_duplicate_or_incomplete_method_is_refused(low_rank):
    from bayes_inr.inference.single import SVIFit

    with pytest.raises(TypeError, match="'map' is defined twice"):
        type("AnotherMap", (SVIFit,), {"name": "map", "summary": "again"})
    with pytest.raises(TypeError, match="family must be one of"):
        type("NoFamily", (registry.InferenceMethod,), {"name": "nofamily", "summary": "x"})
    assert method_names() == (*SHIPPED[:3], "lowrank", *SHIPPED[3:])


@pytest.mark.parametrize(("method", "views", "expected"), [
    ("mcd", 20, "mcd_20"), ("mcd", 10, "mcd_20"), ("mcd", 30, "mcd_20"), ("mcd", 9, "mcd_5"),
    ("mcd", 3, "mcd_5"), ("bbb", 12, "bbb_20"), ("hmc", 6, "hmc_5"), ("btv", 5, "btv_20"),
    ("nuts", 20, None), ("mcd_image", 20, "mcd_image_20"), ("mcd_image", 6, "mcd_image_5"),
    ("ensemble", 20, None),
])
def test_the_validated_configuration_nearest_a_view_count(method, views, expected):
    # log scale: 10 views are as far from 5 as from 20, and a tie goes to the larger count
    assert validated(method, views) == expected


@pytest.mark.parametrize(("method", "views", "expected"), [
    ("mcd", 30, "mcd_real_20"), ("mcd", 34, "mcd_real_20"), ("mcd", 35, "mcd_real_60"),
    ("mcd", 60, "mcd_real_60"), ("btv", 20, "btv_real_20"),
    ("mcd", 5, "mcd_5"),  # the nearer view count wins over the data's own family
    ("bbb", 20, "bbb_real_20"), ("bbb", 60, "bbb_real_60"), ("bbb", 5, "bbb_5"),
    ("hmc", 20, "hmc_20"),  # no real-CT file: the method's own
    ("mcd_image", 20, "mcd_image_real_20"), ("mcd_image", 60, "mcd_image_real_60"),
])
def test_real_data_take_the_configurations_chosen_on_real_ct(method, views, expected):
    assert validated(method, views, "real") == expected


def test_without_config_the_cli_uses_the_validated_configuration(tmp_path, capsys):
    out = tmp_path / "run.nc"
    tiny = ["--size", "16", "--views", "12", "--steps", "3", "--draws", "2", "--width", "8",
            "--depth", "1", "--quiet", "--threads", "1"]
    assert main([*tiny, "--inference", "bbb", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("config: bbb_20 (shipped")
    stored = run_attrs_config(out)
    shipped = load_config("bbb_20")
    assert stored["omega0"] == shipped.omega0 != FitConfig().omega0  # from bbb_20
    assert stored["head"] == shipped.head == "clipped_sigmoid"
    assert stored["width"] == 8  # the command line overrides the shipped file
    assert main([*tiny, "--inference", "bbb", "--config", "none", "--out", str(out),
                 "--overwrite"]) == 0
    assert "config:" not in capsys.readouterr().out
    assert run_attrs_config(out)["omega0"] == FitConfig().omega0  # the bare default


def test_one_mask_per_draw_takes_its_own_validated_configuration(tmp_path, capsys):
    tiny = ["--size", "16", "--views", "20", "--steps", "2", "--draws", "2", "--width", "8",
            "--depth", "1", "--quiet", "--threads", "1", "--inference", "mcd"]
    out = tmp_path / "run.nc"
    assert main([*tiny, "--dropout-scope", "image", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("config: mcd_image_20 (shipped")
    assert run_attrs_config(out)["dropout"] == load_config("mcd_image_20").dropout
    assert main([*tiny, "--out", str(out), "--overwrite"]) == 0  # the control: per-pixel
    assert capsys.readouterr().out.startswith("config: mcd_20 (shipped")
    assert load_config("mcd_image_20").dropout != load_config("mcd_20").dropout


def test_an_image_takes_the_configuration_chosen_on_real_ct(tmp_path, capsys):
    image = tmp_path / "slice.npy"
    np.save(image, np.pad(np.ones((8, 8)), 4) * 0.5)
    out = tmp_path / "run.nc"
    assert main(["--inference", "mcd", "--image", str(image), "--views", "30", "--steps", "2",
                 "--draws", "2", "--width", "8", "--depth", "1", "--quiet", "--threads", "1",
                 "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("config: mcd_real_20 (shipped")
    assert run_attrs_config(out)["tv_weight"] == 9.85e-5  # from mcd_real_20


def test_a_real_ct_benchmark_takes_the_configuration_chosen_on_real_ct(tmp_path, capsys):
    from bayes_inr.data.benchmark import build_real_benchmark, is_real_ct, write_dataset

    real = write_dataset(build_real_benchmark(size=16, views=(20,)), tmp_path / "real.nc")
    assert is_real_ct(real)
    assert not is_real_ct("data/benchmark_128.nc")  # phantoms
    assert not is_real_ct(tmp_path / "missing.nc")  # reported later, by the data loader
    assert main(["--inference", "mcd", "--dataset", str(real), "--image-id", "0", "--views",
                 "20", "--steps", "2", "--draws", "2", "--width", "8", "--depth", "1",
                 "--quiet", "--threads", "1", "--out", str(tmp_path / "run.nc")]) == 0
    assert capsys.readouterr().out.startswith("config: mcd_real_20 (shipped")


def run_attrs_config(path) -> dict:
    from bayes_inr import posterior

    return posterior.config(posterior.load(path))
