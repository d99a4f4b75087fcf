"""Reconstruction problems: phantoms, images (PNG, DICOM), simulated sinograms
(:class:`~bayes_inr.data.sample.Sample`) and the benchmark datasets.

``python -m bayes_inr.data`` writes the benchmarks (:mod:`bayes_inr.data.cli`).
It knows nothing of models or inference."""
