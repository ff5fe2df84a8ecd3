"""One page for a model's results: the fidelity and planning tables, the plots and the side-by-side
video, as Markdown (summary.md, linking the files) and as a self-contained HTML file (report.html,
the files embedded) that opens anywhere without the output folder."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any

from worldmodel.checkpoint import load_checkpoint


def model_line(checkpoint: str | os.PathLike) -> str:
    """What the model is and what it was trained on, from its checkpoint."""
    ckpt = load_checkpoint(checkpoint)
    spec, provenance, config = ckpt["spec"], ckpt["provenance"], ckpt.get("training_config", {})
    samples = int(provenance.get("steps", 0)) * int(config.get("batch_size", 0) or 0)
    data = provenance.get("dataset", {}).get("path", "?")
    extras = ["state track" if spec.has_state else None, "pose maps" if spec.pose else None]
    return (
        f"{checkpoint}: {spec.denoiser['architecture']} (K={spec.context}, {', '.join(e for e in extras if e) or 'frames only'}), "
        f"{provenance.get('steps')} steps ({samples:,} samples) on {data}"
    )


def _markdown_table_to_html(table: str) -> str:
    """The tools' Markdown tables (and the text around them) as HTML."""
    parts, rows = [], []

    def flush() -> None:
        if rows:
            cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows if not set(r) <= set("|-: ")]
            head, body = cells[0], cells[1:]
            parts.append(
                "<table><tr>"
                + "".join(f"<th>{html.escape(c)}</th>" for c in head)
                + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
                + "</table>"
            )
            rows.clear()

    for line in table.splitlines():
        if line.strip().startswith("|"):
            rows.append(line)
        else:
            flush()
            if line.strip():
                parts.append(f"<p>{html.escape(line)}</p>")
    flush()
    return "\n".join(parts)


def _embedded(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def write_report(
    out: Path, checkpoint: str | os.PathLike, fidelity: dict[str, Any], planning: dict[str, Any], timings: dict[str, float]
) -> str:
    """Writes out/summary.md and out/report.html from `tools/evaluate.py` (fidelity, in out/eval) and
    `tools/plan.py` (in out/plan) results; returns the Markdown."""
    model = model_line(checkpoint)
    episodes = len(fidelity["episodes"])
    plot, video = out / "eval" / "fidelity.png", out / "eval" / "side_by_side.mp4"
    fidelity_title = (
        f"Fidelity on {episodes} held-out episodes ({fidelity['data']}), from the real context frames under the recorded actions"
    )
    scored = "the reward read from imagined states" if planning.get("scoring") == "states" else "the predicted reward of imagined frames"
    planning_title = (
        f"MPC in the real MuJoCo {planning['task']} ({planning['config']['planner']} on {scored}; oracle: the same planner on MuJoCo)"
    )
    summary = "\n".join(
        [
            "# DiffusionWorld demo",
            "",
            f"Model: {model}.",
            "",
            f"## {fidelity_title}",
            "",
            fidelity["table"],
            "",
            f"Plots: {plot}; video (real | imagined | |difference|): {video}",
            "",
            f"## {planning_title}",
            "",
            planning["table"],
            "",
            "## Wall time (s)",
            "",
            *(f"- {stage}: {seconds}" for stage, seconds in timings.items()),
        ]
    )
    (out / "summary.md").write_text(summary + "\n")
    media = []
    if video.exists():
        media.append(
            f'<video controls loop autoplay muted src="{_embedded(video, "video/mp4")}"></video>'
            "<p>real | imagined | |difference|, four held-out episodes side by side</p>"
        )
    if plot.exists():
        media.append(f'<img alt="fidelity per horizon" src="{_embedded(plot, "image/png")}">')
    page = "\n".join(
        [
            "<!doctype html><html><head><meta charset='utf-8'><title>DiffusionWorld demo</title>",
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
            "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}video,img{max-width:100%}</style></head><body>",
            "<h1>DiffusionWorld demo</h1>",
            f"<p>Model: {html.escape(model)}.</p>",
            f"<h2>{html.escape(fidelity_title)}</h2>",
            *media,
            _markdown_table_to_html(fidelity["table"]),
            f"<h2>{html.escape(planning_title)}</h2>",
            _markdown_table_to_html(planning["table"]),
            "<h2>Wall time (s)</h2><ul>",
            *(f"<li>{html.escape(stage)}: {seconds}</li>" for stage, seconds in timings.items()),
            "</ul>",
            "</body></html>",
        ]
    )
    (out / "report.html").write_text(page)
    return summary
