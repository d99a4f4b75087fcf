"""Figures of reconstructions and their uncertainty (matplotlib, Agg, written atomically).

One module per figure, each writing a file and returning its :class:`~pathlib.Path`:

- :mod:`.reconstruction`: ground truth, sinogram and any number of reconstructions side
  by side, each titled with its PSNR / SSIM;
- :mod:`.posterior`: the paper's Figure-2 panel for one run, read from its InferenceData
  only: truth, predictive mean, predictive std (or variance), squared error, coverage map
  ``|x - m| / s`` and the reliability curve;
- :mod:`.comparison`: one row per run (mean, std or variance, squared error, reliability)
  with the colour scale of each column shared across the rows;
- :mod:`.trace`: MCMC traces of the log density and a few pixels, per chain;
- :mod:`.boxplots`: a sweep's PSNR boxplots.

:mod:`.style` holds what they share (style, colour maps, atomic file output). All metric
values come from :mod:`bayes_inr.evaluation.metrics` with its definitions (PSNR with data
range 1, the honest ECE, coverage of central empirical-quantile intervals).
"""
