"""Experiments over many fits: sweep grids, their trials, result tables, ranking."""
