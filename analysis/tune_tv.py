"""Choose the TV baseline's weight and iteration count on the validation split.

    python analysis/tune_tv.py [--dataset data/benchmark_128.nc] [--views 5,20]
        [--weights 1e-5:3e-2:4] [--counts 250,500,1000,2000,4000,8000]
        [--out analysis/results/tv_tuning.csv] [--from-csv]
        [--write-settings models/baselines/tv.toml]

For each view count, every validation image is reconstructed by
:func:`bayes_inr.inference.baselines.tv.tv_reconstruct` at every weight (log-spaced,
``LOW:HIGH:PER_DECADE``
or a comma-separated list), all (weight, image) pairs solved together as one batch. The
iterate after each count in ``--counts`` is scored (Chambolle-Pock's iterate at step n does not
depend on the total, so one run of the largest count gives every count). Only the validation
split (the dataset's ``split == "val"`` ids) is read.

Choice, per view count: the weight with the best mean validation PSNR at the largest count (the
solution to convergence), then the smallest count at which that weight's iterates are converged:
every validation image within 60 dB PSNR (RMS difference 0.001) of its largest-count solution. With
``--write-settings`` the choices go to the TOML file read by
:func:`bayes_inr.inference.baselines.tv.tv_settings`
(``[<dataset name>.<views>]`` tables; entries of other datasets and view counts are kept).

``--from-csv`` skips the sweep and makes the choice from the rows already in ``--out``.

Results go to ``--out`` (one row per dataset, views, weight, iterations): mean PSNR and SSIM
against the truth, ``psnr_to_final`` (the smallest, over images, PSNR of the iterate against the
largest-count one), ``objective_gap`` (the largest, over images, relative objective excess over
the largest-count iterate) and ``seconds`` (batch time to that count divided by the batch size,
an amortised time per image).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tune_baselines import int_list  # the script beside this one (analysis/ is on sys.path)

from bayes_inr.core.atomic import atomic_path
from bayes_inr.core.errors import InputError
from bayes_inr.inference.baselines.evaluate import write_csv
from bayes_inr.inference.baselines.tv import tv_reconstruct
from bayes_inr.physics.radon import projection_matrix

COUNTS = (250, 500, 1000, 2000, 4000, 8000)
WEIGHTS = "1e-5:3e-2:4"
CONVERGED_DB = 60.0
COLUMNS = ("dataset", "views", "weight", "iterations", "mean_psnr", "mean_ssim", "n_images",
           "psnr_to_final", "objective_gap", "seconds")


def tv_objective(images: np.ndarray, sinograms: np.ndarray, geometry, weights) -> np.ndarray:
    """``0.5 ||A x - p||^2 + w sum |grad x|`` of each image (k, N, N) in float64."""
    a = projection_matrix(geometry).astype(np.float64)
    x = images.reshape(len(images), -1).astype(np.float64)
    residual = (a @ x.T).T - sinograms.reshape(len(sinograms), -1)
    dy = np.zeros(images.shape)
    dx = np.zeros(images.shape)
    dy[:, :-1] = np.diff(images, axis=1)
    dx[:, :, :-1] = np.diff(images, axis=2)
    tv = np.sqrt(dy**2 + dx**2).sum(axis=(1, 2))
    return 0.5 * (residual**2).sum(axis=1) + np.asarray(weights) * tv


def sweep(samples: Sequence, weights: Sequence[float], counts: Sequence[int], dataset: str,
          log=print) -> list[dict]:
    """Rows of the sweep for ``samples`` (validation samples of one view count)."""
    from bayes_inr.evaluation.metrics import psnr, ssim

    geometry = samples[0].geometry
    views = geometry.n_views
    pairs = [(w, s) for w in weights for s in samples]
    sinograms = np.stack([s.sinogram for _, s in pairs]).astype(np.float64)
    column_weights = np.array([w for w, _ in pairs])
    counts = sorted(counts)
    snapshots: dict[int, tuple[np.ndarray, float]] = {}
    tv_reconstruct(sinograms[:1], geometry, 0.0, 0)  # operator norm (cached) outside the timing
    start = time.perf_counter()

    def keep(iteration, images):
        if iteration in counts:
            snapshots[iteration] = (images.numpy().copy(), time.perf_counter() - start)
            log(f"  {views} views: {iteration} iterations, {snapshots[iteration][1]:.0f} s")

    tv_reconstruct(sinograms, geometry, column_weights, counts[-1], callback=keep)
    final = snapshots[counts[-1]][0]
    final_objective = tv_objective(final, sinograms, geometry, column_weights)
    rows = []
    for count in counts:
        images, seconds = snapshots[count]
        objective = tv_objective(images, sinograms, geometry, column_weights)
        for weight in weights:
            cols = [i for i, (w, _) in enumerate(pairs) if w == weight]
            truth = [psnr(images[i], pairs[i][1].ground_truth) for i in cols]
            rows.append({
                "dataset": dataset, "views": views, "weight": weight, "iterations": count,
                "mean_psnr": float(np.mean(truth)),
                "mean_ssim": float(np.mean([ssim(images[i], pairs[i][1].ground_truth)
                                            for i in cols])),
                "n_images": len(cols),
                "psnr_to_final": float(min(psnr(images[i], final[i]) for i in cols)),
                "objective_gap": float(max((objective[i] - final_objective[i])
                                           / final_objective[i] for i in cols)),
                "seconds": seconds / len(pairs),
            })
    return rows


def choose(rows: list[dict]) -> dict:
    """The chosen weight and iteration count of one view count's rows (see the module doc)."""
    largest = max(r["iterations"] for r in rows)
    at_largest = [r for r in rows if r["iterations"] == largest]
    best = max(at_largest, key=lambda r: r["mean_psnr"])
    mine = sorted((r for r in rows if r["weight"] == best["weight"]),
                  key=lambda r: r["iterations"])
    converged = next(r for r in mine if r["iterations"] == largest
                     or r["psnr_to_final"] >= CONVERGED_DB)
    weights = sorted({r["weight"] for r in rows})
    return {"weight": best["weight"], "iterations": converged["iterations"],
            "mean_psnr": converged["mean_psnr"], "final_psnr": best["mean_psnr"],
            "edge": best["weight"] in (weights[0], weights[-1]),
            "unconverged": converged["iterations"] == largest
            and all(r["psnr_to_final"] < CONVERGED_DB for r in mine[:-1]) and len(mine) > 1}


def write_settings(path: Path, dataset: str, chosen: dict[int, dict], ids: Sequence[int]) -> None:
    """Merge ``chosen`` (views -> choice) into the TOML settings file at ``path``."""
    table = tomllib.loads(path.read_text()) if path.is_file() else {}
    header = []
    if path.is_file():
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                break
            header.append(line)
    notes = {}
    if path.is_file():  # keep the comment above each existing table
        pending: list[str] = []
        for line in path.read_text().splitlines()[len(header):]:
            if line.startswith("#"):
                pending.append(line)
            elif line.startswith("["):
                notes[line.strip()] = pending
                pending = []
    for views, choice in chosen.items():
        table.setdefault(dataset, {})[str(views)] = {"weight": choice["weight"],
                                                     "iterations": choice["iterations"]}
        notes[f"[{dataset}.{views}]"] = [
            f"# validation ids {', '.join(map(str, ids))}: mean PSNR {choice['mean_psnr']:.2f} dB "
            f"({choice['final_psnr']:.2f} dB at the largest count)"]
    lines = header or [
        "# TV baseline settings per dataset and view count, chosen on the validation split by",
        "# `python analysis/tune_tv.py --write-settings models/baselines/tv.toml` (sweep in",
        "# analysis/results/tv_tuning.csv); read by bayes_inr.inference.baselines.tv.tv_settings.",
    ]
    for name in sorted(table):
        for views in sorted(table[name], key=int):
            entry = table[name][views]
            key = f"[{name}.{views}]"
            lines += ["", *notes.get(key, []), key, f"weight = {entry['weight']!r}",
                      f"iterations = {int(entry['iterations'])}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")


def parse_weights(text: str) -> list[float]:
    """``LOW:HIGH:PER_DECADE`` (log-spaced, both ends included) or comma-separated values."""
    try:
        if ":" in text:
            low, high, per = text.split(":")
            low, high, per = float(low), float(high), int(per)
            if not 0 < low <= high or per <= 0:
                raise ValueError
            n = int(round(math.log10(high / low) * per)) + 1
            values = [float(f"{v:.3g}") for v in np.logspace(math.log10(low),
                                                            math.log10(high), n)]
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--weights must be LOW:HIGH:PER_DECADE or numbers, got {text!r}") \
            from None
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise InputError(f"--weights must be finite and >= 0, got {text!r}")
    return sorted(set(values))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep; returns the exit status (2 on bad input)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="data/benchmark_128.nc",
                        help="benchmark netCDF file (default %(default)s)")
    parser.add_argument("--views", default="5,20",
                        help="comma-separated view counts to tune on (default %(default)s)")
    parser.add_argument("--weights", default=WEIGHTS,
                        help="TV weights: LOW:HIGH:PER_DECADE, log-spaced, or a comma-separated "
                             "list (default %(default)s)")
    parser.add_argument("--counts", default=",".join(map(str, COUNTS)),
                        help="iteration counts to score (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on a shared machine more threads "
                             "wait on each other)")
    parser.add_argument("--out", default="analysis/results/tv_tuning.csv",
                        help="output CSV; rows of other datasets or view counts already there "
                             "are kept (default %(default)s)")
    parser.add_argument("--from-csv", action="store_true",
                        help="no sweep: choose from the rows of this dataset already in --out")
    parser.add_argument("--write-settings", default=None, metavar="TOML",
                        help="merge the choices into this settings file "
                             "(e.g. models/baselines/tv.toml)")
    args = parser.parse_args(argv)
    try:
        views = sorted(set(int_list(args.views, "--views")))
        counts = sorted(set(int_list(args.counts, "--counts")))
        weights = parse_weights(args.weights)
        if args.threads <= 0:
            raise InputError(f"--threads must be positive, got {args.threads}")
        from bayes_inr.data.benchmark import benchmark_ids, benchmark_sample, load_benchmark

        dataset = load_benchmark(args.dataset)
        ids = benchmark_ids(dataset, "val")
        samples = {} if args.from_csv else {
            v: [benchmark_sample(dataset, i, v) for i in ids] for v in views}
    except (InputError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    name = Path(args.dataset).name.removesuffix(".nc")
    print(f"{name}: validation ids {ids}, views {views}, {len(weights)} weights "
          f"{weights[0]:g}..{weights[-1]:g}, counts {counts}, SNR "
          f"{dict(dataset.attrs).get('snr_db', '?')}")

    out = Path(args.out)
    old = []
    if out.is_file():
        with open(out, newline="") as handle:
            old = list(csv.DictReader(handle))
    rows, chosen = [], {}
    for v in views:
        if args.from_csv:
            mine = [{**r, "views": v, "weight": float(r["weight"]),
                     "iterations": int(r["iterations"]),
                     **{k: float(r[k]) for k in ("mean_psnr", "psnr_to_final")}}
                    for r in old if r["dataset"] == name and int(r["views"]) == v]
            if not mine:
                print(f"error: no rows of {name} at {v} views in {out}", file=sys.stderr)
                return 2
            weights = sorted({r["weight"] for r in mine})
            counts = sorted({r["iterations"] for r in mine})
        else:
            mine = sweep(samples[v], weights, counts, name)
        rows += mine
        chosen[v] = choose(mine)
    if not args.from_csv:  # keep the rows of other (dataset, views)
        rows = [r for r in old if not (r["dataset"] == name and int(r["views"]) in views)] + rows
        write_csv(out, rows, COLUMNS)

    print(f"\nmean validation PSNR (dB) at {counts[-1]} iterations")
    print(f"{'weight':>10}" + "".join(f"{f'{v} views':>10}" for v in views))
    for w in weights:
        print(f"{w:>10g}" + "".join(
            f"{next(r['mean_psnr'] for r in rows if r['dataset'] == name and r['views'] == v and r['weight'] == w and r['iterations'] == counts[-1]):>10.2f}"  # noqa: E501
            for v in views))
    print("\nchosen")
    for v, c in chosen.items():
        print(f"  [{name}.{v}] weight = {c['weight']:g}, iterations = {c['iterations']}: "
              f"{c['mean_psnr']:.2f} dB ({c['final_psnr']:.2f} at {counts[-1]})")
        if c["edge"]:
            print(f"  note: {v} views: the best weight is at the edge of the grid; "
                  "extend --weights")
        if c["unconverged"]:
            print(f"  note: {v} views: not converged before {counts[-1]}; extend --counts")
    if args.write_settings:
        write_settings(Path(args.write_settings), name, chosen, ids)
        print(f"wrote {args.write_settings}")
    if not args.from_csv:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
