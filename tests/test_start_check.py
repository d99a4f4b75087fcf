"""analysis/start_check.py: its summary figures and its refusal of bad input."""

import sys
from pathlib import Path

import numpy as np
import pytest

from bayes_inr import posterior

sys.path.insert(0, str(Path(__file__).parents[1] / "analysis"))
start_check = pytest.importorskip("start_check")


def test_the_worst_seed_is_measured_from_the_median():
    assert start_check.spread_line([33.90, 33.74, 33.92, 33.67, 31.09]) == (
        "median 33.74, worst 2.65 below")
    assert start_check.spread_line([33.0, None]) == "-"  # a member not fitted


def test_a_members_psnr_is_read_from_its_run(tmp_path):
    """Draws whose mean misses the truth by 0.01 everywhere score 40 dB; no file, None."""
    truth = np.random.default_rng(0).uniform(0.1, 0.9, (8, 8))
    draws = truth + 0.01 + 0.005 * np.array([-1.0, 1.0])[:, None, None]
    path = tmp_path / "member0.nc"
    posterior.save(posterior.build(draws[None], sinogram=np.zeros((4, 12)),
                                   angles=np.linspace(0, np.pi, 4, endpoint=False),
                                   ground_truth=truth, method="mcd",
                                   config={"inference": "mcd"}), path)
    assert start_check.member_psnr(path, truth) == pytest.approx(40.0, abs=1e-6)
    assert start_check.member_psnr(tmp_path / "absent.nc", truth) is None


@pytest.mark.parametrize("args", [["--dataset", "lungs"], ["--tries", "1"],
                                  ["--views", "7"], ["--seeds", "0"]])
def test_bad_arguments_exit_2_before_any_work(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        start_check.main(args)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("error: ")
