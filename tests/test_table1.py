import sys
from pathlib import Path

import numpy as np
import pytest

from bayes_inr import posterior
from bayes_inr.data import phantom_sample

sys.path.insert(0, str(Path(__file__).parents[1] / "analysis"))
table1 = pytest.importorskip("table1")

TINY = {"steps": 5, "draws": 3, "width": 8, "depth": 1, "threads": 1}


def test_table1_runs_every_method_resumes_and_sets_the_paper_alongside(tmp_path):
    profile = table1.Profile("unused", overrides=TINY, hmc_overrides={"warmup": 2}, workers=1)
    members = table1.member_configs(20, 2, TINY)
    assert [m.inference for m in members] == ["mcd", "mcd"]
    sample = phantom_sample(5, 20, 16)
    rows = table1.run_image(sample, "test", 20, 5, profile, tmp_path, members)
    methods = [r["method"] for r in rows]
    assert methods == ["FBP", "CGLS", "EM", "SART", "SIRT", "BBB", "MCD", "DE-2", "HMC"]
    # MCD is member 1 of the DE-2 fit, also saved alone for reports
    assert len(list(tmp_path.glob("*.nc"))) == 9
    mcd, de2 = (posterior.load(tmp_path / f"{m}_20v_5.nc") for m in ("mcd", "de2"))
    np.testing.assert_array_equal(posterior.image_draws(mcd),
                                  posterior.image_draws(de2.isel(chain=[0])))
    again = table1.run_image(sample, "test", 20, 5, profile, tmp_path, members)
    assert [r["psnr"] for r in again] == [r["psnr"] for r in rows]  # read back, not refitted
    table1.write_tables(rows, tmp_path, "tiny")
    text = (tmp_path / "table1.md").read_text()
    sirt = next(line for line in text.splitlines() if line.startswith("| 20 | SIRT |"))
    assert "30.44" in sirt  # the paper's test PSNR of SIRT at 20 views
    assert (tmp_path / "table1.csv").read_text().count("\n") == len(rows) + 1
