"""Provenance: every run file says which code, configuration and data made it."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from bayes_inr import posterior
from bayes_inr.core import provenance
from bayes_inr.inference.config import FitConfig


def test_config_hash_ignores_run_control_only():
    base = FitConfig(inference="mcd", steps=100)
    assert provenance.config_hash(base) == provenance.config_hash(base.replace(threads=2,
                                                                               workers=3))
    assert provenance.config_hash(base) != provenance.config_hash(base.replace(steps=101))
    assert provenance.config_hash(base) != provenance.config_hash(base.replace(seed=1))
    # a mapping hashes like the dataclass it came from; members are hashed alike
    import dataclasses

    assert provenance.config_hash(dataclasses.asdict(base)) == provenance.config_hash(base)
    ens = {"inference": "ensemble", "member_configs": [dataclasses.asdict(base)]}
    same = {"inference": "ensemble",
            "member_configs": [dataclasses.asdict(base.replace(threads=1))]}
    other = {"inference": "ensemble",
             "member_configs": [dataclasses.asdict(base.replace(dropout=0.3))]}
    assert provenance.config_hash(ens) == provenance.config_hash(same)
    assert provenance.config_hash(ens) != provenance.config_hash(other)


def test_data_hash_sees_values_shape_and_absence():
    a = np.arange(6.0).reshape(2, 3)
    assert provenance.data_hash(a) == provenance.data_hash(a.copy())
    assert provenance.data_hash(a) != provenance.data_hash(a.reshape(3, 2))
    b = a.copy()
    b[0, 0] += 1e-12
    assert provenance.data_hash(a) != provenance.data_hash(b)
    assert provenance.data_hash(a, None) != provenance.data_hash(a)


def test_run_files_carry_commit_version_and_hashes(tmp_path):
    rng = np.random.default_rng(0)
    sinogram, angles, truth = rng.random((4, 9)), np.linspace(0, 3, 4), rng.random((6, 6))
    config = FitConfig(inference="map", steps=10)
    idata = posterior.build(rng.random((1, 2, 6, 6)), sinogram=sinogram, angles=angles,
                            method="map", config={"anything": 1}, ground_truth=truth,
                            settings=config)
    posterior.save(idata, tmp_path / "run.nc")
    attrs = posterior.load(tmp_path / "run.nc").posterior_predictive.attrs
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=provenance.__file__.rsplit("/", 2)[0]).stdout.strip()
    assert attrs["git_commit"] == commit and len(commit) == 40
    assert attrs["git_dirty"] in (0, 1)
    assert attrs["config_hash"] == provenance.config_hash(config)
    assert attrs["data_hash"] == provenance.data_hash(sinogram, angles, truth)
    assert attrs["bayes_inr_version"]
    # another truth: another data hash
    other = posterior.build(rng.random((1, 2, 6, 6)), sinogram=sinogram, angles=angles,
                            method="map", config=None, ground_truth=truth * 0.5)
    assert other.posterior_predictive.attrs["data_hash"] != attrs["data_hash"]


def test_any_tracked_change_in_the_checkout_makes_it_dirty(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    for path in ("bayes_inr/fit.py", "models/mcd_20.toml", "analysis/results/table.md"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("a\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start")
    clean = provenance.git_state.__wrapped__(tmp_path)
    assert clean[1] is False and len(clean[0]) == 40
    (tmp_path / "analysis/results/table.md").write_text("b\n")  # results do not count
    (tmp_path / "untracked.txt").write_text("b\n")  # nor do untracked files
    assert provenance.git_state.__wrapped__(tmp_path)[1] is False
    (tmp_path / "models/mcd_20.toml").write_text("b\n")  # a configuration outside the code
    assert provenance.git_state.__wrapped__(tmp_path)[1] is True
    assert provenance.git_state.__wrapped__(tmp_path / "models") == clean[:1] + (True,)
    assert provenance.git_state.__wrapped__(tmp_path.parent / "nowhere") == ("unknown", None)


def test_the_default_checkout_is_the_repository_root():
    assert (provenance.CHECKOUT / "bayes_inr" / "core" / "provenance.py").is_file()


def test_config_hash_rejects_other_types():
    with pytest.raises(TypeError):
        provenance.config_hash(["not", "a", "mapping"])


@pytest.mark.parametrize("name, value", [("tv_units", "objective"), ("start_tries", 3)])
def test_a_setting_added_later_leaves_old_hashes_alone_at_its_default(name, value):
    """``tv_units`` and ``start_tries`` came after runs were recorded: at their default they
    are not hashed, so a run file recorded without them keeps its hash; set, they change it."""
    import dataclasses

    base = FitConfig(inference="mcd", steps=100, tv_weight=1.0)
    recorded_before = {k: v for k, v in dataclasses.asdict(base).items() if k != name}
    assert provenance.config_hash(recorded_before) == provenance.config_hash(base)
    assert (provenance.config_hash(base.replace(**{name: value}))
            != provenance.config_hash(base))
