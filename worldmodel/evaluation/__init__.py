"""Metrics and evaluations of imagined rollouts against real ones."""
