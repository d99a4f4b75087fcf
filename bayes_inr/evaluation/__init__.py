"""Scores of runs, from their InferenceData only: metrics, MCMC convergence, recalibration.
It imports nothing from inference."""
