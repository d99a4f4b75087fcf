"""Shipped configurations named from anywhere; Python priors recorded by importable name."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pyro.distributions as dist
import pytest

from bayes_inr import configs
from bayes_inr.core.errors import InputError
from bayes_inr.experiments.grid import load_grid
from bayes_inr.inference.config import FitConfig, load_config
from bayes_inr.model.priors import Custom, as_prior

MODELS = Path(__file__).resolve().parents[1] / "models"


def test_every_models_file_is_shipped_under_its_name():
    expected = {p.relative_to(MODELS).with_suffix("").as_posix() for p in MODELS.rglob("*.toml")}
    assert set(configs.shipped()) == expected
    assert set(configs.shipped("")) == {n for n in expected if "/" not in n}
    assert set(configs.shipped("sweeps")) == {n for n in expected if n.startswith("sweeps/")}


@pytest.mark.parametrize("pixel", ["mcd_20", "mcd_5", "mcd_real_20", "mcd_real_60"])
def test_one_mask_configurations_are_their_per_pixel_sibling_at_another_rate(pixel):
    """``mcd_image_*`` was swept over the dropout rate alone from its per-pixel sibling: a
    change to the sibling that the one-mask file does not follow fails here."""
    pixel_config = load_config(pixel)
    image = load_config(pixel.replace("mcd", "mcd_image", 1))
    assert (pixel_config.dropout_scope, image.dropout_scope) == ("pixel", "image")
    assert image.replace(dropout=pixel_config.dropout, dropout_scope="pixel") == pixel_config


def test_names_resolve_outside_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    by_name = load_config("mcd_20")
    assert by_name == load_config(MODELS / "mcd_20.toml")
    assert load_config("models/mcd_20.toml") == by_name  # the README's spelling, elsewhere
    assert load_config("mcd_5.toml", steps=7).steps == 7
    assert load_grid("sweeps/mcd_cpu").trials()


def test_a_local_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("mcd_20").write_text('inference = "map"\n')
    assert load_config("mcd_20").inference == "map"


def test_an_unknown_name_lists_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="shipped: bbb_20, bbb_5") as err:
        load_config("mcd_21")
    assert "sweeps/" not in str(err.value)  # fit configurations only


def test_the_list_command_names_each_configuration(capsys):
    assert configs.main([]) == 0
    out = capsys.readouterr().out
    for name in configs.shipped():
        assert any(line.startswith(name + " ") for line in out.splitlines()), name
    assert configs.main(["--show", "mcd_20"]) == 0
    assert capsys.readouterr().out == (MODELS / "mcd_20.toml").read_text()
    assert configs.main(["--show", "nothing"]) == 2


def student_t(name, shape):
    return dist.StudentT(3.0, 0.0, 0.5).expand(shape)


def test_a_python_prior_is_recorded_by_importable_name_and_source(tmp_path, monkeypatch):
    (tmp_path / "mypriors.py").write_text(textwrap.dedent("""
        import pyro.distributions as dist

        def wide(name, shape, fan_in):
            return dist.Normal(0.0, 3.0).expand(shape)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    prior = as_prior("mypriors:wide")
    record = prior.describe()
    assert record["fn"] == "mypriors:wide" and record["importable"]
    assert "Normal(0.0, 3.0)" in record["source"]
    assert as_prior(record["fn"]).fn is prior.fn  # the record names it back
    assert FitConfig(prior="mypriors:wide").prior == "mypriors:wide"
    with pytest.raises(InputError, match="cannot be imported"):
        FitConfig(prior="mypriors:narrow")


def test_a_lambda_prior_is_recorded_with_its_source_but_not_as_importable():
    prior = Custom(lambda name, shape: dist.Laplace(0.0, 0.1).expand(shape))
    record = prior.describe()
    assert record["fn"].endswith("<lambda>") and not record["importable"]
    assert "Laplace(0.0, 0.1)" in record["source"]
    assert Custom(student_t).describe()["importable"]  # module level in an importable module
    with pytest.raises(InputError, match="not an importable name"):
        as_prior(record["fn"])


def test_builtin_specs_still_parse():
    assert as_prior("normal:2.5").scale == 2.5
    with pytest.raises(InputError, match="unknown prior"):
        as_prior("gauss")


def test_a_prior_of_main_is_not_called_importable():
    def local(name, shape):
        return dist.Normal(0.0, 1.0).expand(shape)

    local.__module__, local.__qualname__ = "__main__", "local"
    record = Custom(local).describe()
    assert record["fn"] == "__main__:local" and not record["importable"]


@pytest.mark.parametrize(("spec", "message"), [
    ("normal:-1", "positive"), ("laplace:0", "positive"), ("logistic:nan", "positive"),
    ("fan_in_normal:abc", "must be a number"), ("student:1", "prior"),
])
def test_a_registered_prior_needs_a_positive_parameter(spec, message):
    with pytest.raises(InputError, match=message):
        FitConfig(prior=spec)
    assert as_prior("logistic:0.5").scale == 0.5
