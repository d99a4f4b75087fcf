"""Seed robustness of single fits, read off Table 1's ensembles.

Table 1's DE-N rows come from one ensemble per image whose members are the same
configuration with seeds 0, 1, ... (Fourier matrix, initial weights, masks; the TV start is
the same for every seed). So the members of an image are repeated single fits, and their
spread is the answer to "does one fit land in a poor optimum?". For every image this
writes each member's PSNR (its posterior mean against the truth), their median, and the
worst member's distance to the median over the first five seeds (issue 14's check: within
1 dB on every validation image) and over all members; and beside them what the fit can see
without the truth, each member's data misfit over the members' median, marking the members
:mod:`bayes_inr.evaluation.misfit` flags, and over the misfit of the image's TV row (what a
single fit started at TV could compare itself with). No fit is made: only ensemble and TV
runs whose config and data hashes are those of Table 1's rows are read::

    python analysis/seeds.py --table analysis/results/table1_cpu     # -> seeds.md

Run files are not committed, so a checkout may hold the runs of some sections only. A
section of the earlier ``seeds.md`` whose runs are absent is kept as it was, if Table 1's
rows it was read from are still the table's (each section records their hashes; a section
written before that is kept and says so), and dropped with a warning otherwise.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bayes_inr import posterior
from bayes_inr.core.atomic import atomic_path
from bayes_inr.core.errors import InputError
from bayes_inr.evaluation import metrics, misfit

FIRST = 5
"""The seeds of issue 14's robustness check: the first five."""


def member_psnrs(idata) -> tuple[list[int], list[float]]:
    """The seed and the PSNR of the posterior mean of every member (chain) of an
    ensemble run, in member order."""
    truth = np.asarray(idata.constant_data["ground_truth"].values)
    seeds = [json.loads(str(c))["seed"]
             for c in idata.posterior_predictive["member_config"].values]
    return seeds, [metrics.psnr(mean, truth) for mean in posterior.chain_means(idata)]


def spread(psnrs: list[float]) -> dict:
    """Median, and worst minus median over the first :data:`FIRST` and over all members."""
    first, every = np.asarray(psnrs[:FIRST]), np.asarray(psnrs)
    return {"median_first": float(np.median(first)),
            "worst_first": float(first.min() - np.median(first)),
            "median_all": float(np.median(every)),
            "worst_all": float(every.min() - np.median(every))}


def table_rows(table: Path) -> tuple[dict, dict]:
    """Table 1's largest DE-N row and its TV row of every image, each as
    (dataset, split, views, image id) -> row."""
    path = table / "table1.csv"
    if not path.is_file():
        raise InputError(f"{path} not found: give a Table 1 output directory")
    rows, tv = {}, {}
    try:
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                key = (row["dataset"], row["split"], int(row["views"]), int(row["image_id"]))
                if row["method"] == "TV":
                    tv[key] = row
                seeded = re.fullmatch(r"DE-(\d+)", row["method"])  # not "top N", "TV spread"
                if seeded and int(seeded[1]) > rows.get(key, (0, None))[0]:
                    rows[key] = (int(seeded[1]), row)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{path} is not a Table 1 table ({type(err).__name__}: {err})") from None
    return {key: row for key, (_, row) in rows.items()}, tv


def runs_of(table: Path, pattern: str, wanted: dict) -> Iterator[tuple[tuple, object]]:
    """(key, run) for the runs ``TABLE/runs/PATTERN`` whose config and data hashes are those
    of a row of ``wanted`` (key -> row), one at a time; runs of other configurations are
    skipped."""
    by_hash = {(row["config_hash"], row["data_hash"]): key for key, row in wanted.items()}
    for path in sorted((table / "runs").glob(pattern)):
        idata = posterior.load(path)
        attrs = posterior.run_attrs(idata)
        key = by_hash.get((attrs.get("config_hash"), attrs.get("data_hash")))
        if key is not None:
            yield key, idata


def collect(table: Path, rows: tuple[dict, dict] | None = None) -> list[dict]:
    """One record per image of Table 1 whose ensemble run is in ``TABLE/runs``; with its TV
    run there, each member's misfit over the TV image's too (``rows``: :func:`table_rows` of
    ``table``, read here when not given)."""
    ensembles, tv_rows = rows or table_rows(table)
    tv = dict(runs_of(table, "tv_*.nc", tv_rows))  # one image each: small
    records = []
    for key, idata in runs_of(table, "de[0-9]*_*.nc", ensembles):  # ten members each: one by one
        seeds, psnrs = member_psnrs(idata)
        operator = misfit.run_operator(idata)
        misfits = misfit.member_misfits(idata, operator)
        over_tv = (misfits / misfit.member_misfits(tv[key], operator)[0] if key in tv
                   else np.full(len(misfits), np.nan))
        records.append(dict(zip(("dataset", "split", "views", "image_id"), key, strict=True))
                       | {"seeds": seeds, "psnrs": psnrs, "ratios": misfit.misfit_ratios(misfits),
                          "over_tv": over_tv, "flagged": misfit.poor_members(misfits)}
                       | spread(psnrs))
    return sorted(records, key=lambda r: (r["dataset"], r["views"], r["split"] != "val",
                                          r["image_id"]))


def group_hashes(ensembles: dict) -> dict[str, str]:
    """Section heading -> the config and data hashes of Table 1's ensemble rows it is read
    from (``ensembles``: :func:`table_rows`), one string per section."""
    groups: dict = {}
    for (dataset, split, views, _), row in sorted(ensembles.items()):
        groups.setdefault(heading(dataset, views, split), []).append(
            f"{row['config_hash']}/{row['data_hash']}")
    return {title: " ".join(hashes) for title, hashes in groups.items()}


def heading(dataset: str, views: int, split: str) -> str:
    """The heading of the section of one dataset, view count and split."""
    return f"## {dataset}, {views} views, {split} split"


SECTION = re.compile(r"## (.*), (\d+) views, (\w+) split")
"""A section's heading (:func:`heading`): dataset, view count and split."""

HASHES = re.compile(r"<!-- table rows: (.*) -->")
"""The line of a section that records the hashes of its Table 1 rows."""

UNCHECKED = "Kept from an earlier `seeds.md` whose sections did not record their rows' hashes."


def earlier_sections(path: Path, current: dict[str, str], written: set[str]
                     ) -> tuple[dict[str, str], list[str]]:
    """The sections of the earlier file ``path`` to keep: those not ``written`` now whose
    recorded hashes equal ``current`` (heading -> hashes of Table 1's rows now), or that
    recorded none (marked :data:`UNCHECKED`); and the headings of the others, dropped (stale
    ones, and headings this script does not write)."""
    if not path.is_file():
        return {}, []
    kept, stale = {}, []
    for block in re.split(r"\n(?=## )", path.read_text())[1:]:
        title, _, body = block.partition("\n")
        if title in written:
            continue
        if not SECTION.fullmatch(title):  # not a section this script writes
            stale.append(title)
            continue
        recorded = HASHES.search(body)
        if recorded is None and title in current:
            body = body.rstrip("\n") + f"\n\n{UNCHECKED}\n" if UNCHECKED not in body else body
        elif recorded is None or recorded[1] != current.get(title):
            stale.append(title)
            continue
        kept[title] = f"{title}\n{body.rstrip()}\n"
    return kept, stale


def _flag_summary(group: list[dict]) -> str:
    """How the misfit flags match the members more than 1 dB below their image's median,
    and the misfit over TV's of those members and of the others (a check a single fit
    could make, if the two did not overlap)."""
    poor = {(r["image_id"], k) for r in group for k, p in enumerate(r["psnrs"])
            if p < r["median_all"] - 1}
    flagged = {(r["image_id"], k) for r in group for k in r["flagged"]}
    over_tv = {(r["image_id"], k): q for r in group for k, q in enumerate(r["over_tv"])
               if np.isfinite(q)}

    def span(keys) -> str:
        values = [over_tv[key] for key in keys if key in over_tv]
        return f"{min(values):.2f}-{max(values):.2f}" if values else "none"

    return (f"Members more than 1 dB below the median: {len(poor)}, of which flagged by "
            f"their data misfit {len(poor & flagged)}; other members flagged: "
            f"{len(flagged - poor)}. Misfit over the TV image's: {span(poor)} for those "
            f"members, {span(over_tv.keys() - poor)} for the others.")


def markdown(records: list[dict], table: Path, hashes: dict[str, str],
             kept: dict[str, str] | None = None) -> str:
    """The seeds table, one section per dataset, view count and split (``hashes``: see
    :func:`group_hashes`), after them the ``kept`` sections of an earlier file (heading ->
    text), in the order of their headings."""
    head = [f"# Seeds of single fits, from `{table}`", "",
             "Written by `python analysis/seeds.py`. Each row is one image: the PSNR (dB) of",
             "the posterior mean of every member of Table 1's ensemble of the image (the same",
             "configuration, seeds 0, 1, ...), their median, and the worst member minus the",
             f"median over seeds 0-{FIRST - 1} and over all. Issue 14's check: the worst of the "
             f"first {FIRST} within 1 dB of the median on every validation image. `misfit /",
             "median`: each member's data misfit (the mean squared sinogram residual of its",
             "posterior mean) over the members' median, which the fit can see without the truth;",
             f"`*`: above {misfit.POOR_FACTOR}, flagged by `python -m bayes_inr.fit` as a likely "
             "poor optimum. `misfit / TV`: each member's misfit over that of the image's TV",
             "row, the reference a single fit has (its TV start); it could flag a single poor",
             "fit only if the poor members' ratios lay above every other member's.", ""]
    groups: dict = {}
    for r in records:
        groups.setdefault((r["dataset"], r["views"], r["split"]), []).append(r)
    sections = dict(kept or {})
    for (dataset, views, split), group in groups.items():
        worst = min(group, key=lambda r: r["worst_first"])
        beyond = sum(r["worst_first"] < -1 for r in group)
        title = heading(dataset, views, split)
        lines = [title, "", f"<!-- table rows: {hashes[title]} -->", "",
                  f"The worst of seeds 0-{FIRST - 1} falls at most {-worst['worst_first']:.2f} "
                  f"dB below the median (image {worst['image_id']}): "
                  + (f"more than 1 dB on {beyond} of {len(group)} images." if beyond
                     else "within 1 dB on every image.") + " " + _flag_summary(group), "",
                  "| image | PSNR per seed (dB; * flagged) | misfit / median per seed | "
                  f"misfit / TV per seed | median 0-{FIRST - 1} | "
                  f"worst - median 0-{FIRST - 1} | median all | worst - median all |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['image_id']} | "
                  + " ".join(f"{p:.2f}" + "*" * (k in r["flagged"])
                             for k, p in enumerate(r["psnrs"]))
                  + f" | {' '.join(f'{q:.2f}' for q in r['ratios'])} | "
                  f"{' '.join(f'{q:.2f}' for q in r['over_tv'])} | "
                  f"{r['median_first']:.2f} | {r['worst_first']:+.2f} | "
                  f"{r['median_all']:.2f} | {r['worst_all']:+.2f} |" for r in group]
        sections[title] = "\n".join(lines) + "\n"
    return "\n".join(head) + "\n" + "\n".join(
        sections[title] for title in sorted(sections, key=_order))


def _order(title: str) -> tuple:
    """Sections by dataset, view count (as a number), then validation before test."""
    dataset, views, split = SECTION.fullmatch(title).groups()
    return dataset, int(views), split != "val"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", type=Path, required=True,
                   help="a Table 1 output directory (table1.csv and runs/)")
    args = p.parse_args(argv)
    try:
        rows = table_rows(args.table)
        records = collect(args.table, rows)
        hashes = group_hashes(rows[0])
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not records:
        print(f"error: no ensemble run of {args.table}/runs matches its table1.csv",
              file=sys.stderr)
        return 2
    out = args.table / "seeds.md"
    written = {heading(r["dataset"], r["views"], r["split"]) for r in records}
    kept, stale = earlier_sections(out, hashes, written)
    for title in stale:
        print(f"warning: dropped the section '{title[3:]}' of the earlier {out}: its runs "
              "are not here, and Table 1's rows changed since or it is no section of this "
              "script", file=sys.stderr)
    with atomic_path(out) as tmp:
        tmp.write_text(markdown(records, args.table, hashes, kept))
    print(f"wrote {out} ({len(records)} images read, {len(kept)} earlier sections kept)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
