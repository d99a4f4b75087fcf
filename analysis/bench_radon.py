"""Benchmark: batched forward + adjoint of our operator against astra's CPU FP + BP.

    python analysis/bench_radon.py [--batch 32] [--views 20] [--repeats 7]

Both sides project and back-project the same batch of images; the figure is the
median over repeats and the ratio ours / astra (<= 1 means ours is faster).
"""

from __future__ import annotations

import argparse
import functools
import time

import astra
import numpy as np
import torch

from bayes_inr import Geometry, RadonOperator


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


@torch.no_grad()
def ours_fp_bp(op: RadonOperator, batch: torch.Tensor) -> None:
    op.adjoint(op(batch))


def astra_fp_bp(images: np.ndarray, geometry: Geometry) -> None:
    vol, proj = geometry.astra_geometries()
    pid = astra.create_projector("linear", proj, vol)
    try:
        for image in images:
            sid, sino = astra.create_sino(image, pid)
            bid, _ = astra.create_backprojection(sino, pid)
            astra.data2d.delete([sid, bid])
    finally:
        astra.projector.delete(pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--views", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}, batch {args.batch}, views {args.views}")
    print(f"{'size':>5} {'ours ms':>9} {'astra ms':>9} {'ratio':>7}")
    for size in args.sizes:
        geometry = Geometry(size, args.views)
        op = RadonOperator(geometry)
        images = np.random.default_rng(0).random((args.batch, size, size), dtype=np.float32)
        batch = torch.from_numpy(images)

        t_ours = median_time(functools.partial(ours_fp_bp, op, batch), args.repeats)
        t_astra = median_time(functools.partial(astra_fp_bp, images, geometry), args.repeats)
        print(f"{size:>5} {1e3 * t_ours:9.2f} {1e3 * t_astra:9.2f} {t_ours / t_astra:7.3f}")


if __name__ == "__main__":
    main()
