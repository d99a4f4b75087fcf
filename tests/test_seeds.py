"""analysis/seeds.py: member PSNRs of Table 1's ensembles, worst minus median, matching."""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from bayes_inr import posterior

sys.path.insert(0, str(Path(__file__).parents[1] / "analysis"))
seeds = pytest.importorskip("seeds")

N, V, D = 8, 4, 12
OFFSETS = (0.01, 0.02, 0.005, 0.01, 0.04, 0.1)
"""Member k's draws all equal truth + OFFSETS[k]: its PSNR is -20 log10 OFFSETS[k]."""


def ensemble(truth, config):
    members = [np.repeat((truth + d)[None], 3, axis=0) for d in OFFSETS]
    idata = posterior.build(members, sinogram=np.ones((V, D)), angles=np.arange(V) * 0.7,
                            method=f"DE-{len(OFFSETS)}", config=config, ground_truth=truth,
                            chain_labels=[f"member{k}-mcd" for k in range(len(OFFSETS))])
    member_json = np.array([json.dumps({"seed": k}) for k in range(len(OFFSETS))],
                           dtype=object)
    return idata.assign_coords(member_config=("chain", member_json),
                               groups="posterior_predictive")


def write_table(table: Path, idata, config_hash=None, tv=None):
    """Table 1 rows DE-2, DE-6 and the larger DE-8 of the top 8 and DE-10 with TV spread
    (other ensembles than the seeds') of ``idata`` (under ``config_hash`` if given) and,
    with ``tv``, a TV row of that run."""
    labels = ("DE-2", f"DE-{len(OFFSETS)}", "DE-8, top 8", "DE-10, TV spread 3")
    runs = dict.fromkeys(labels, idata) | ({"TV": tv} if tv else {})
    rows = [{"dataset": "phantoms", "split": "val", "views": V, "image_id": 3, "method": m,
             "config_hash": config_hash or posterior.run_attrs(run)["config_hash"],
             "data_hash": posterior.run_attrs(run)["data_hash"]} for m, run in runs.items()]
    with (table / "table1.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_member_psnrs_and_the_worst_against_the_median(tmp_path):
    truth = np.random.default_rng(0).uniform(0.2, 0.8, (N, N))
    idata = ensemble(truth, {"inference": "ensemble"})
    found, psnrs = seeds.member_psnrs(idata)
    assert found == list(range(len(OFFSETS)))
    np.testing.assert_allclose(psnrs, [-20 * np.log10(d) for d in OFFSETS], rtol=1e-9)
    # first five: 40, 33.98, 46.02, 40, 27.96 dB -> median 40, worst 12.04 below it
    got = seeds.spread(psnrs)
    assert got["median_first"] == pytest.approx(40.0)
    assert got["worst_first"] == pytest.approx(20 * np.log10(0.01 / 0.04))
    assert got["worst_all"] == pytest.approx(20 - np.median(psnrs))
    (tmp_path / "runs").mkdir()
    posterior.save(idata, tmp_path / "runs" / "de6_phantom_4v_3.nc")
    # the TV row's image is member 0's: its misfit over TV's is 1, the others' their
    # misfit over member 0's
    tv = posterior.from_reconstruction(truth + OFFSETS[0], sinogram=np.ones((V, D)),
                                       angles=np.arange(V) * 0.7, method="TV",
                                       ground_truth=truth, config={"method": "tv"})
    posterior.save(tv, tmp_path / "runs" / "tv_phantom_4v_3.nc")
    write_table(tmp_path, idata, tv=tv)
    ensembles, _ = seeds.table_rows(tmp_path)
    assert [row["method"] for row in ensembles.values()] == [f"DE-{len(OFFSETS)}"]
    (record,) = seeds.collect(tmp_path)
    np.testing.assert_allclose(record["over_tv"], record["ratios"] / record["ratios"][0])
    assert record["over_tv"][0] == pytest.approx(1.0)
    assert len(set(np.round(record["over_tv"], 6))) > 2  # not all equal: the check can fail
    assert seeds.main(["--table", str(tmp_path)]) == 0
    text = (tmp_path / "seeds.md").read_text()
    assert "## phantoms, 4 views, val split" in text
    row = seeds.table_rows(tmp_path)[0][("phantoms", "val", V, 3)]
    assert f"<!-- table rows: {row['config_hash']}/{row['data_hash']} -->" in text
    assert seeds.main(["--table", str(tmp_path)]) == 0  # a rerun writes the same file
    assert (tmp_path / "seeds.md").read_text() == text
    assert "falls at most 12.04 dB below the median (image 3): more than 1 dB on 1 of 1" in text
    poor = [q for q, p in zip(record["over_tv"], record["psnrs"], strict=True)
            if p < np.median(record["psnrs"]) - 1]
    assert f"Misfit over the TV image's: {min(poor):.2f}-{max(poor):.2f} for those" in text


def test_runs_of_another_configuration_are_not_read(tmp_path, capsys):
    truth = np.random.default_rng(1).uniform(0.2, 0.8, (N, N))
    idata = ensemble(truth, {"inference": "ensemble"})
    (tmp_path / "runs").mkdir()
    posterior.save(idata, tmp_path / "runs" / "de6_phantom_4v_3.nc")
    write_table(tmp_path, idata, config_hash="0" * 16)
    assert seeds.main(["--table", str(tmp_path)]) == 2
    assert "no ensemble run" in capsys.readouterr().err
    assert not (tmp_path / "seeds.md").exists()
    assert seeds.main(["--table", str(tmp_path / "missing")]) == 2
    (tmp_path / "table1.csv").write_text("not,a\ntable,1\n")
    assert seeds.main(["--table", str(tmp_path)]) == 2
    assert "is not a Table 1 table" in capsys.readouterr().err


def test_sections_whose_runs_are_absent_are_kept_only_while_their_rows_are(tmp_path):
    """A section of the earlier seeds.md that is not written now is kept if its recorded
    hashes are those of Table 1's rows now, kept and marked if it recorded none, and
    dropped if its rows changed or left the table."""
    def section(title, hashes=None):
        marker = f"<!-- table rows: {hashes} -->\n\n" if hashes else ""
        return f"## {title}\n\n{marker}The worst ...\n\n| image |\n|---|\n| 0 |\n"

    titles = [f"phantoms, {v} views, val split" for v in (5, 20, 40, 60, 80)]
    (tmp_path / "seeds.md").write_text("# Seeds\n\nintro\n\n" + "\n".join([
        section(titles[0], "a/x b/x"), section(titles[1], "c/x"), section(titles[2]),
        section(titles[3]), section(titles[4], "e/x"), "## notes by hand\n\ntext\n"]))
    current = {f"## {t}": h for t, h in zip(titles, ("a/x b/x", "c/y", "d/x", None, "e/x"),
                                            strict=True) if h}
    kept, stale = seeds.earlier_sections(tmp_path / "seeds.md", current,
                                         written={f"## {titles[4]}"})
    assert list(kept) == [f"## {titles[0]}", f"## {titles[2]}"]
    assert seeds.UNCHECKED in kept[f"## {titles[2]}"]
    assert seeds.UNCHECKED not in kept[f"## {titles[0]}"]
    # rows changed; rows gone; not a section of the script
    assert stale == [f"## {titles[1]}", f"## {titles[3]}", "## notes by hand"]
    assert seeds.earlier_sections(tmp_path / "absent.md", current, set()) == ({}, [])
