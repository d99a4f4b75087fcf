"""How well each seed's network fits its TV start, and what the best of several fits does.

For every image of one split of one Table 1 dataset and view count, and the first
``--seeds`` members of its ensemble (Table 1's MCD member configuration, seeds 0, 1, ...),
the script fits the network to the TV image ``--tries`` times (try t from seed
``s + t * START_SEED_STRIDE``, exactly the fits of ``--start-tries``) and lists each fit's
data misfit over the TV image's (:attr:`bayes_inr.inference.tv_start.Start.misfit_ratio`)
beside the PSNR of the member Table 1 fitted from the first (its run file; no truth is used
to choose anything). With ``--fit`` it also fits every member with ``start_tries =
--tries`` (runs kept under ``runs/starts_DATA_Vv_ID/``, reused when present) and compares
the worst seed with the median, one fit each way::

    python analysis/start_check.py --dataset "real CT" --views 60 --split val --fit

Writes ``analysis/results/table1_cpu/starts_DATA_Vv_SPLIT.md`` (``..._fitted.md`` with
``--fit``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import table1  # noqa: E402  (the datasets, member configurations and run files)

from bayes_inr import posterior  # noqa: E402
from bayes_inr.core.atomic import atomic_path  # noqa: E402
from bayes_inr.core.provenance import git_state  # noqa: E402
from bayes_inr.data.benchmark import benchmark_ids, benchmark_sample, load_benchmark  # noqa: E402
from bayes_inr.evaluation.metrics import psnr  # noqa: E402
from bayes_inr.inference.ensemble import member_path  # noqa: E402
from bayes_inr.inference.fit import fit  # noqa: E402
from bayes_inr.inference.single import build_model  # noqa: E402
from bayes_inr.inference.tv_start import START_SEED_STRIDE, tv_start  # noqa: E402

OUT = Path("analysis/results/table1_cpu")


def member_psnr(path: Path, truth: np.ndarray) -> float | None:
    """The PSNR of the posterior mean of the run at ``path`` (None when it is absent)."""
    if not path.is_file():
        return None
    return psnr(posterior.image_draws(posterior.load(path)).mean(0), truth)


def spread_line(psnrs: list[float | None]) -> str:
    """'median M, worst W below' of the seeds' PSNRs ('-' if any is missing)."""
    if any(value is None for value in psnrs):
        return "-"
    median = float(np.median(psnrs))
    return f"median {median:.2f}, worst {median - min(psnrs):.2f} below"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="real CT", help="a cpu-profile dataset's name")
    parser.add_argument("--views", type=int, default=60)
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--seeds", type=int, default=5, help="members 0 .. SEEDS-1")
    parser.add_argument("--tries", type=int, default=3, help="fits to the TV image per seed")
    parser.add_argument("--fit", action="store_true",
                        help="also fit every member with start_tries = TRIES")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args(argv)
    profile = table1.PROFILES["cpu"]
    datasets = {d.name: d for d in profile.datasets}
    if args.dataset not in datasets:
        parser.exit(2, f"error: --dataset must be one of {', '.join(datasets)}\n")
    dataset = datasets[args.dataset]
    if args.views not in dataset.views or args.seeds < 1 or args.tries < 2:
        parser.exit(2, f"error: {dataset.name} has views {dataset.views}; --seeds must be at "
                       "least 1 and --tries at least 2\n")
    data = load_benchmark(dataset.path)
    members, _ = table1.image_configs(
        profile, dataset, args.views, args.seeds,
        table1.ranked_configs(dataset, args.views, args.seeds, profile.overrides))
    base = members[0].replace(threads=args.threads)
    runs = OUT / "runs"
    commit, dirty = git_state()
    lines = [f"# Network starts at the TV image: {dataset.name}, {args.views} views, "
             f"{args.split} split", "",
             f"Written by `python analysis/start_check.py --dataset '{dataset.name}' --views "
             f"{args.views} --split {args.split} --seeds {args.seeds} --tries {args.tries}"
             f"{' --fit' if args.fit else ''}` (commit {commit[:10]}"
             f"{' with uncommitted changes' if dirty else ''}). Each seed's network is fitted "
             f"to the TV image {args.tries} times (`--start-tries {args.tries}`); `misfit / TV`: "
             "each fit's mean squared sinogram residual over the TV image's (* the lowest, the "
             "start kept). PSNR (dB) of the member's posterior mean: Table 1's run (first fit "
             f"only), and{'' if args.fit else ' (with --fit)'} the member fitted from the best "
             "of the tries.", ""]
    for image_id in benchmark_ids(data, args.split):
        sample = benchmark_sample(data, image_id, args.views)
        store = table1.run_path(runs, "members", dataset, args.views, image_id).with_suffix("")
        refits = table1.run_path(runs, "starts", dataset, args.views, image_id).with_suffix("")
        rows, first, best = [], [], []
        for k in range(args.seeds):
            config = base.replace(seed=base.seed + k)
            model = build_model(sample, config)
            ratios = [tv_start(model, seed=config.seed + t * START_SEED_STRIDE).misfit_ratio
                      for t in range(args.tries)]
            chosen = int(np.argmin(ratios))
            first.append(member_psnr(member_path(store, k), sample.ground_truth))
            refit = refits / f"member{k}_tries{args.tries}.nc"
            if args.fit and not refit.is_file():
                refits.mkdir(parents=True, exist_ok=True)
                posterior.save(fit(sample, config.replace(start_tries=args.tries),
                                   progress=False), refit)
            best.append(member_psnr(refit, sample.ground_truth))
            cells = " ".join(f"{r:.2f}{'*' if t == chosen else ''}" for t, r in enumerate(ratios))
            shown = [("-" if v is None else f"{v:.2f}") for v in (first[-1], best[-1])]
            rows.append(f"| {k} | {cells} | {shown[0]} | {shown[1]} |")
            print(f"image {image_id} seed {k}: {cells}; PSNR {shown[0]} -> {shown[1]}",
                  flush=True)
        lines += [f"## image {image_id}", "",
                  f"Table 1's fits: {spread_line(first)}; from the best of {args.tries}: "
                  f"{spread_line(best)}.", "",
                  "| seed | misfit / TV per try | PSNR, first fit | PSNR, best of tries |",
                  "|---|---|---|---|", *rows, ""]
    fitted = "_fitted" if args.fit else ""
    path = OUT / f"starts_{dataset.key}_{args.views}v_{args.split}{fitted}.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
