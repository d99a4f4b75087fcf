"""analysis/recalibration_spread.py: the recalibration target read off held-out validation."""

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "analysis"))
spread = pytest.importorskip("recalibration_spread")


def held_out(eces, coverages):
    return [{"ece": e, "coverage_90": c} for e, c in zip(eces, coverages, strict=True)]


def test_the_chance_of_the_window_is_a_normal_probability():
    """Half-width 0.02 at 1.96 standard deviations of the mean: 0.95; a tenfold spread
    leaves about 0.16; no spread, 1."""
    sd = 0.02 / 1.959964 * math.sqrt(5)
    assert spread.window_chance(sd, 5) == pytest.approx(0.95, abs=1e-6)
    assert spread.window_chance(10 * sd, 5) == pytest.approx(math.erf(0.196 / math.sqrt(2)),
                                                             abs=1e-4)
    assert spread.window_chance(0.0, 2) == 1.0


def test_a_row_counts_images_at_the_target_and_lists_a_spread_only_from_five():
    five = spread.row({"held_out": held_out([0.02, 0.03, 0.05, 0.08, 0.01],
                                            [0.85, 0.90, 0.95, 0.88, 0.92])}, n_test=5)
    assert five["ece_met"] == 3 and five["n"] == 5 and five["ece_best"] == 0.01
    assert five["coverage_sd"] == pytest.approx(math.sqrt(0.0058 / 4))  # sample sd, ddof 1
    assert five["mean_sd"] == pytest.approx(five["coverage_sd"] / math.sqrt(5))
    two = spread.row({"held_out": held_out([0.04, 0.06], [0.80, 0.99])}, n_test=2)
    assert two["ece_met"] == 0 and two["coverage_sd"] is None and two["chance"] is None


def test_the_table_from_calibration_files(tmp_path, monkeypatch, capsys):
    """Symmetric files with held-out scores are listed, others skipped and counted; with
    no usable file the script says so and exits 2."""
    monkeypatch.setattr(spread, "CALIBRATIONS", tmp_path)
    monkeypatch.setattr(spread, "OUT", tmp_path / "spread.md")
    assert spread.main([]) == 2 and "no calibration file" in capsys.readouterr().err
    (tmp_path / "bad_symmetric.json").write_text("{not json")
    assert spread.main([]) == 2 and "is not a calibration file" in capsys.readouterr().err
    (tmp_path / "bad_symmetric.json").unlink()
    with pytest.raises(SystemExit) as exit_:
        spread.main(["--unknown"])
    assert exit_.value.code == 2
    monkeypatch.setattr(spread, "benchmark_ids", lambda data, split: [5, 6, 7, 8, 9])
    monkeypatch.setattr(spread, "load_benchmark", lambda path: None)
    scores = held_out([0.02, 0.04, 0.05, 0.03, 0.06], [0.9, 0.88, 0.91, 0.93, 0.86])
    for name, body in {"bbb_phantom_20v_symmetric": {"held_out": scores},
                       "bbb_phantom_20v": {"held_out": scores},  # residuals' form: not listed
                       "de2_phantom_20v_symmetric": {}}.items():  # no held-out scores
        (tmp_path / f"{name}.json").write_text(json.dumps(body | {"dataset": "d.nc"}))
    assert spread.main([]) == 0
    text = (tmp_path / "spread.md").read_text()
    assert "| bbb_phantom_20v | 0.040 (0.020) | 2 of 5 |" in text
    assert "skipped: 1." in text and "de2_phantom" not in text
    assert "Held-out images with object ECE at most 0.03: 2 of 5." in text
