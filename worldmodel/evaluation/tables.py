"""The evaluation and planning results as a reader wants them: a one-line verdict over each table,
the direction in which every number is better, and no row that cannot say anything (a body that
never moves, an observation dimension that never changes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

STILL_CM = 0.05  # a body whose real position moves less than this at every horizon does not move


def _share(wins: int, total: int, noun: str) -> str:
    """ "every horizon" or "3 of 4 horizons"."""
    return f"every {noun}" if wins == total else f"{wins} of {total} {noun}s"


def fidelity_verdict(result: dict[str, Any]) -> str:
    """Whether the imagined frames beat copying the last real frame, and from where they flicker more than reality."""
    hs = result["horizons"]
    psnr_wins = sum(result["psnr"][h] > result["copy_last_psnr"][h] for h in hs)
    ssim_wins = sum(result["ssim"][h] > result["copy_last_ssim"][h] for h in hs)
    first, last = hs[0], hs[-1]
    verdict = (
        f"Verdict: the model beats copying the last frame on PSNR at {_share(psnr_wins, len(hs), 'horizon')} and on SSIM "
        f"at {_share(ssim_wins, len(hs), 'horizon')} (PSNR {result['psnr'][first]:.1f} vs {result['copy_last_psnr'][first]:.1f} dB at "
        f"h = {first}, {result['psnr'][last]:.1f} vs {result['copy_last_psnr'][last]:.1f} at h = {last})."
    )
    jitter = [h for h in hs if result["flicker"][h] > result["copy_last_flicker"][h]]
    if jitter:
        verdict += (
            f" From h = {jitter[0]} on its frames change more than reality does: flicker {result['flicker'][jitter[0]]:.2f} "
            f"against the real change of {result['copy_last_flicker'][jitter[0]]:.2f}."
        )
    return verdict


FLICKER_NOTE = (
    "PSNR (dB) and SSIM (at most 1): higher is better. Flicker: mean |imagined frame-to-frame change - real change| "
    "in 0-255 units, lower is better (0: the frames change exactly as reality does). Copying the last frame never "
    "changes, so its flicker is the real change it misses: it falls as the motion settles, and a model that moves "
    "can flicker more than copy-last while being far closer to the real frames."
)


def frames_table(result: dict[str, Any]) -> str:
    rows = [
        f"| {h} | {result['psnr'][h]:.2f} | {result['copy_last_psnr'][h]:.2f} | {result['ssim'][h]:.3f} | "
        f"{result['copy_last_ssim'][h]:.3f} | {result['flicker'][h]:.2f} | {result['copy_last_flicker'][h]:.2f} |"
        for h in result["horizons"]
    ]
    return "\n".join(
        [
            fidelity_verdict(result),
            "",
            "| horizon | PSNR | copy-last PSNR | SSIM | copy-last SSIM | flicker | copy-last flicker |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            FLICKER_NOTE,
        ]
    )


def moving_bodies(result: dict[str, Any], bodies: Sequence[str]) -> tuple[list[str], list[str]]:
    """The key bodies that really move in these episodes, and those that do not (by "motion_cm")."""
    motion = result.get("motion_cm", {})
    still = [b for b in bodies if b in motion and max(motion[b].values()) < STILL_CM]
    return [b for b in bodies if b not in still], still


def positions_table(result: dict[str, Any], bodies: Sequence[str]) -> str:
    """Position error (cm) of the key bodies: read off the imagined frames by the probe (with its floor
    on the real frames) and/or in the imagined state, next to the bodies' real motion (copy-last)."""
    probe, state = "position_cm" in result, "state_position_cm" in result
    moving, still = moving_bodies(result, bodies)
    hs = result["horizons"]
    columns = (["imagined frames (probe)", "probe floor (real frames)"] if probe else []) + (["imagined state"] if state else [])
    columns.append("copy-last")
    copy_last = result["copy_last_position_cm"] if probe else result["motion_cm"]

    def cells(body: str, h: int) -> list[float]:
        values = [result["position_cm"][body][h], result["position_floor_cm"][body][h]] if probe else []
        return values + ([result["state_position_cm"][body][h]] if state else []) + [copy_last[body][h]]

    rows = [f"| {h} | {body} | " + " | ".join(f"{v:.2f}" for v in cells(body, h)) + " |" for body in moving for h in hs]
    own = "position_cm" if probe else "state_position_cm"
    verdicts = [
        f"{body} {result[own][body][hs[-1]]:.2f} cm off at h = {hs[-1]} (copy-last {copy_last[body][hs[-1]]:.2f})" for body in moving
    ]
    where = "read off the imagined frames by a position probe" if probe else "in the imagined state (probe=false: the frames are not read)"
    lines = [f"Position error (cm, lower is better) of the key bodies, {where}.", ""]
    if verdicts:
        lines += ["Verdict: " + "; ".join(verdicts) + ".", ""]
    lines += ["| horizon | body | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns), *rows]
    if still:
        lines += ["", f"Not shown: {', '.join(still)} (never moves more than {STILL_CM} cm in these episodes: nothing to predict)."]
    return "\n".join(lines)


def observation_table(result: dict[str, Any], env_id: str) -> str:
    """Mean |imagined - real| per dimension of the task's own observation, copy-last in brackets;
    dimensions that never change are left out."""
    hs = result["horizons"]
    dims = len(result["observation_error"][hs[0]])
    changing = [d for d in range(dims) if max(result["copy_last_observation_error"][h][d] for h in hs) > 0]
    better = sum(result["observation_error"][h][d] < result["copy_last_observation_error"][h][d] for h in hs for d in changing)
    rows = [
        f"| {h} | "
        + " | ".join(f"{result['observation_error'][h][d]:.3f} ({result['copy_last_observation_error'][h][d]:.3f})" for d in changing)
        + " |"
        for h in hs
    ]
    lines = [
        f"The task's observation ({env_id}'s own) of the imagined state: mean |imagined - real| per dimension, lower is better "
        "(copy-last in brackets).",
        "",
        f"Verdict: closer to the real observation than copy-last in {_share(better, len(changing) * len(hs), '(dimension, horizon) pair')}.",
        "",
        "| horizon | " + " | ".join(f"obs[{d}]" for d in changing) + " |",
        "|---|" + "---|" * len(changing),
        *rows,
    ]
    unchanged = [d for d in range(dims) if d not in changing]
    if unchanged:
        lines += ["", f"Not shown: obs{unchanged} (never change in these episodes)."]
    return "\n".join(lines)


def rendering_table(result: dict[str, Any]) -> str:
    """How well the frames follow the imagined state, apart from how well the state follows reality."""
    hs = result["horizons"]
    first, last = hs[0], hs[-1]
    rows = [
        f"| {h} | {result['render_psnr'][h]:.2f} | {result['render_ssim'][h]:.3f} | {result['render_floor_psnr'][h]:.2f} | "
        f"{result['render_floor_ssim'][h]:.3f} | {result['rendered_state_psnr'][h]:.2f} | {result['psnr'][h]:.2f} |"
        for h in hs
    ]
    return "\n".join(
        [
            "Frames against the task's own rendering of the imagined state (PSNR dB, SSIM; higher is better): how well the "
            "frames follow the state, apart from how well the state follows reality. Floor: the recorded frames against the "
            "rendering of the recorded states (a frame shows the bodies one physics substep before its state).",
            "",
            f"Verdict: the frames follow the imagined state to {result['render_psnr'][first]:.1f} dB at h = {first} and "
            f"{result['render_psnr'][last]:.1f} dB at h = {last} (floor {result['render_floor_psnr'][last]:.1f}); drawn exactly, "
            f"the imagined state would score {result['rendered_state_psnr'][last]:.1f} dB against reality at h = {last}, "
            f"the frames score {result['psnr'][last]:.1f}.",
            "",
            "| horizon | frames vs rendered imagined state PSNR | SSIM | floor PSNR | floor SSIM | rendered imagined state vs real PSNR | frames vs real PSNR |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )


def fidelity_tables(result: dict[str, Any], bodies: Sequence[str], env_id: str) -> str:
    """All of rollout_fidelity's result that is there, each table with its verdict."""
    parts = [frames_table(result)]
    if "render_psnr" in result:
        parts.append(rendering_table(result))
    if "position_cm" in result or "state_position_cm" in result:
        parts.append(positions_table(result, bodies))
    if "observation_error" in result:
        parts.append(observation_table(result, env_id))
    return "\n\n".join(parts)


def planning_verdict(results: dict[str, dict]) -> str:
    """How the world model's planner does against the same planner on the real simulator and random actions."""
    rate = {m: r["success_rate"] for m, r in results.items()}
    parts = [f"{m} {100 * v:.0f} %" for m, v in rate.items()]
    line = "Verdict: success (higher is better) " + ", ".join(parts)
    if "world_model" in rate and "oracle" in rate:
        wm, oracle = rate["world_model"], rate["oracle"]
        line += (
            ": the planner fails even on MuJoCo itself (the search, not the model, is the bottleneck)"
            if oracle == 0
            else ": planning through the world model matches planning on MuJoCo"
            if wm >= oracle
            else f": the world model reaches {100 * wm / oracle:.0f} % of the oracle's success"
        )
    return line + ". Return: higher is better."
