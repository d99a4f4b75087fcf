"""Reproduce the paper's Table 1: every method on the validation and test phantoms.

    python analysis/table1.py --profile cpu --out analysis/results/table1_cpu
    python analysis/table1.py --profile cpu --splits val --out analysis/results/table1_cpu
    python analysis/table1.py --profile paper --out results/table1_paper   # GPU / cluster

For each split (the profile's, or ``--splits``), view count (5, 20) and phantom, the script
runs the five classical baselines, BBB, a deep ensemble of ``--members`` MCD base learners,
and HMC (test split only, as in the paper). The members are ``models/mcd_V.toml`` with seeds
seed + k (own Fourier features and initial weights), or the configs in
``models/de_V/`` (for example the top N of a validation sweep written by
``python -m bayes_inr.sweep --rank ... --write-configs models/de_V``), the MCD config
first. MCD is member 1 alone and DE-N the first N members: the members are independent
fits, so the nested ensembles share them. Every run is saved under ``OUT/runs/`` and
skipped when present, so an interrupted table resumes. Configurations come from
``models/`` and were chosen on the validation split only; the test split is scored once,
here.

Writes ``OUT/table1.csv`` (one row per split, views, method, phantom) and ``OUT/table1.md``
(means over the phantoms done, the paper's numbers beside ours) after every phantom.
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bayes_inr import posterior
from bayes_inr.atomic import atomic_path
from bayes_inr.baselines import METHODS as BASELINES
from bayes_inr.baselines import reconstruct
from bayes_inr.config import load_config
from bayes_inr.data import SPLITS, benchmark_sample, load_benchmark
from bayes_inr.ensemble import fit_ensemble
from bayes_inr.fit import fit
from bayes_inr.metrics import score

PAPER = Path(__file__).with_name("reference") / "table1_paper.csv"
ENSEMBLES = (2, 5, 10)
KEYS = ("psnr", "nll", "ece")


@dataclass(frozen=True)
class Profile:
    """Data and budgets of one Table-1 run."""

    dataset: str
    splits: tuple[str, ...] = ("val", "test")
    members: int = max(ENSEMBLES)
    overrides: dict = field(default_factory=dict)
    hmc_overrides: dict = field(default_factory=dict)
    workers: int = 2


PROFILES = {
    # 128 x 128 on a 2-core CPU within 90 minutes: the models/ budgets, the test split (the
    # configurations were chosen on validation, analysis/bench_fit.py), two ensemble
    # members fitted side by side (MCD is the first, DE-2 both)
    "cpu": Profile("data/benchmark_128.nc", splits=("test",), members=2),
    # the paper's 256 x 256 images and longer training; meant for a GPU or a Ray cluster
    "paper": Profile("data/benchmark_256.nc", overrides={"steps": 10000, "device": "cuda"},
                     hmc_overrides={"width": 256, "depth": 3, "activation": "relu",
                                    "omega0": 10.0, "draws": 1000, "warmup": 1000},
                     workers=1),
}


def member_configs(views: int, members: int, overrides: dict) -> list:
    """``members`` MCD configs: ``models/mcd_V.toml``, then ``models/de_V/*.toml`` if any,
    else the MCD config again (each member gets its own seed)."""
    paths = [Path(f"models/mcd_{views}.toml"), *sorted(Path(f"models/de_{views}").glob("*.toml"))]
    if len(paths) == 1:
        paths *= members
    if len(paths) < members:
        raise SystemExit(f"DE-{members} needs {members} member configs, found {len(paths)} "
                         f"(models/mcd_{views}.toml and models/de_{views}/*.toml)")
    return [load_config(path, **overrides) for path in paths[:members]]


def cached(path: Path, make):
    """The InferenceData at ``path``, made (and saved) by ``make()`` when absent."""
    if path.exists():
        return posterior.load(path)
    idata = make()
    posterior.save(idata, path)
    return idata


def run_image(sample, split: str, views: int, image_id: int, profile: Profile, runs: Path,
              members: list) -> list[dict]:
    """Score rows of every method on one phantom."""
    rows = []
    tag = f"{views}v_{image_id}"
    for method in BASELINES:
        idata = cached(runs / f"{method}_{tag}.nc", lambda m=method: posterior.from_reconstruction(
            reconstruct(m, sample.sinogram, sample.geometry), sinogram=sample.sinogram,
            angles=sample.geometry.angles, method=m.upper(), ground_truth=sample.ground_truth))
        rows.append(score(idata) | {"method": method.upper()})
    bbb = load_config(f"models/bbb_{views}.toml", **profile.overrides)
    rows.append(score(cached(runs / f"bbb_{tag}.nc", lambda: fit(sample, bbb, False)))
                | {"method": "BBB"})
    base = members[0].replace(inference="ensemble", workers=profile.workers)
    ensemble = cached(runs / f"de{len(members)}_{tag}.nc",
                      lambda: fit_ensemble(sample, base, members, progress=False))
    mcd = cached(runs / f"mcd_{tag}.nc", lambda: ensemble.isel(chain=[0]))  # for reports
    rows.append(score(mcd) | {"method": "MCD"})
    for n in (n for n in ENSEMBLES if n <= len(members)):
        rows.append(score(ensemble.isel(chain=slice(0, n))) | {"method": f"DE-{n}"})
    if split == "test":
        hmc = load_config(f"models/hmc_{views}.toml", **profile.overrides,
                          **profile.hmc_overrides)
        rows.append(score(cached(runs / f"hmc_{tag}.nc", lambda: fit(sample, hmc, False)))
                    | {"method": "HMC"})
    for row in rows:
        row |= {"split": split, "views": views, "image_id": image_id}
    return rows


def paper_numbers() -> dict:
    """(views, method) -> the paper's Table-1 row."""
    with PAPER.open() as handle:
        lines = [line for line in handle if not line.startswith("#")]
    return {(int(r["views"]), r["method"].rstrip("*")): r for r in csv.DictReader(lines)}


def _number(value: str) -> float:
    return float("nan") if value in ("-", "") else float(value)


def markdown(rows: list[dict], title: str) -> str:
    """Means over phantoms per (views, method) and split, paper's numbers alongside."""
    paper = paper_numbers()
    methods = list(dict.fromkeys(r["method"] for r in rows))
    head = ["views", "method"]
    for split in ("val", "test"):
        head += [f"{split} {k.upper()}" for k in KEYS] + [f"paper {split} {k.upper()}"
                                                           for k in KEYS]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for views in sorted({r["views"] for r in rows}):
        for method in methods:
            cells = [str(views), method]
            for split in ("val", "test"):
                chosen = [r for r in rows if (r["views"], r["method"], r["split"])
                          == (views, method, split)]
                for key in KEYS:
                    values = [r.get(key, np.nan) for r in chosen]
                    mean = np.mean(values) if values else np.nan
                    cells.append("-" if np.isnan(mean) else f"{mean:.2f}" if key == "psnr"
                                 else f"{mean:.3f}")
                ref = paper.get((views, method), {})
                cells += [ref.get(f"{split}_{key}", "-") for key in KEYS]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--dataset", help="benchmark file (default: the profile's)")
    parser.add_argument("--views", type=int, nargs="+", default=[20, 5])
    parser.add_argument("--splits", nargs="+", choices=sorted(SPLITS),
                        help="splits to run (default: the profile's)")
    parser.add_argument("--members", type=int,
                        help="ensemble size fitted, DE-N reported for N <= this "
                             "(default: the profile's)")
    parser.add_argument("--out", type=Path, default=Path("analysis/results/table1_cpu"))
    args = parser.parse_args()
    profile = PROFILES[args.profile]
    splits = args.splits or profile.splits
    n_members = args.members or profile.members
    dataset = load_benchmark(args.dataset or profile.dataset)
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    start = time.perf_counter()
    for views in args.views:
        members = member_configs(views, n_members, profile.overrides)
        for split in splits:
            for image_id in SPLITS[split]:
                sample = benchmark_sample(dataset, image_id, views)
                rows += run_image(sample, split, views, image_id, profile, runs, members)
                seconds = time.perf_counter() - start
                print(f"{split} {views} views phantom {image_id} done ({seconds:.0f} s)",
                      flush=True)
                write_tables(rows, args.out, f"Table 1, profile {args.profile} "
                             f"({sample.geometry.size} px, {n_members} ensemble members)")
    print((args.out / "table1.md").read_text())


def write_tables(rows: list[dict], out: Path, title: str) -> None:
    """``table1.csv`` (every row) and ``table1.md`` (means, paper alongside), atomically."""
    keys = ["split", "views", "image_id", "method", "psnr", "ssim", "nll", "ece", "coverage_90"]
    with atomic_path(out / "table1.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with atomic_path(out / "table1.md") as tmp:
        Path(tmp).write_text(markdown(rows, title))


if __name__ == "__main__":
    main()
