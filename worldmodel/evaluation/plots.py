"""Matplotlib figures of evaluations, written to files (no display needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

METRICS = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("flicker", "flicker (0-255)"))


def plot_fidelity(curves: dict, path: str | os.PathLike, title: str = "") -> Path:
    """Metric vs horizon, imagined next to copy-last-frame: one panel per metric, and one per key body
    when the curves hold position errors (cm, with the probe's floor)."""
    bodies = list(curves.get("position_cm", {}))
    fig, axes = plt.subplots(1, len(METRICS) + len(bodies), figsize=(4 * (len(METRICS) + len(bodies)), 3.2))
    for ax, body in zip(axes[len(METRICS) :], bodies):
        h = np.arange(1, len(curves["position_cm"][body]) + 1)
        ax.plot(h, curves["position_cm"][body], label="world model")
        ax.plot(h, curves["copy_last_position_cm"][body], "--", label="copy last frame")
        ax.plot(h, curves["position_floor_cm"][body], ":", label="probe floor")
        ax.set_xlabel("horizon (steps)")
        ax.set_ylabel(f"{body} error (cm)")
        ax.grid(alpha=0.3)
        ax.legend()
    for ax, (key, label) in zip(axes, METRICS):
        h = np.arange(1, len(curves[key]) + 1)
        ax.plot(h, curves[key], label="world model")
        ax.plot(h, curves[f"copy_last_{key}"], "--", label="copy last frame")
        ax.set_xlabel("horizon (steps)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_returns(
    names: Sequence[str],
    real: np.ndarray,
    imagined: np.ndarray,
    path: str | os.PathLike,
    title: str = "",
    real_ci: np.ndarray | None = None,
    imagined_ci: np.ndarray | None = None,
) -> Path:
    """Imagined vs real return: one point per episode, policy means as large markers (with error
    bars where intervals (P, 2) are given), y = x dashed."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for p, name in enumerate(names):
        points = ax.scatter(real[p], imagined[p], s=10, alpha=0.4)
        color = points.get_facecolor()[0]
        x, y = real[p].mean(), imagined[p].mean()
        if real_ci is not None and imagined_ci is not None:
            ax.errorbar(
                x,
                y,
                xerr=[[x - real_ci[p][0]], [real_ci[p][1] - x]],
                yerr=[[y - imagined_ci[p][0]], [imagined_ci[p][1] - y]],
                color=color,
                capsize=3,
                lw=1,
            )
        ax.scatter(x, y, s=90, marker="D", color=color, edgecolor="k", label=name, zorder=3)
    lo, hi = min(real.min(), imagined.min()), max(real.max(), imagined.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel("real return (MuJoCo)")
    ax.set_ylabel("imagined return (DiffusionWorld)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
