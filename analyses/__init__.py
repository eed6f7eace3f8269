"""Pipelines over checkpoints and runs: evaluation sets, maps, ATOM, agreement, reports."""
