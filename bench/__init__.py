"""Benchmarks for arbot: a deterministic dataset generator and one module per figure.

Every benchmark measures a *ratio against a baseline taken in the same run* (medians over
repeats), so figures from different machines can be compared by their ratios; absolute numbers
are printed too. ``python -m bench`` runs them all; ``python -m bench aging --size 100000`` one.
"""
