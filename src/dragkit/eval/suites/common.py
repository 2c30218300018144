"""What every suite shares: the engine's side of a result record and of a group's figures, and the
defaults of the suite interface (``suites/__init__.py``).

A suite's ``run`` scores the edit its own way and hands its metrics to
:func:`record`, which adds what the drag itself says (stop rule met, steps,
the engine's handle distance, the final handles), the timing and the trace.
Its ``aggregate`` hands its own figures to :func:`aggregate_drag`, which adds
the drag's shares and means and the timing of the group.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import metrics as M
from ..engines import DragOutcome

__all__ = ["SuiteBase", "record", "aggregate_drag", "DRAG_METRIC_DOCS"]

#: What the figures :func:`aggregate_drag` adds mean (a suite's ``metric_docs`` include these).
DRAG_METRIC_DOCS = {
    "reached": "share of edits whose tracked handles met the stop rule",
    "steps_mean": "mean optimisation steps",
    "seconds_per_edit": "mean seconds per edit",
    "seconds_per_step": "mean seconds per step",
}


def record(problem: dict[str, Any], metrics: dict[str, Any], out: DragOutcome,
           images: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """One result record: ``problem``, ``metrics`` (the suite's, then the drag's), ``timing``, ``trace``.

    Args:
        problem: the problem's JSON-able description.
        metrics: the suite's scores of the edit.
        out: the drag's outcome (:func:`dragkit.eval.engines.run_drag`).
        images: ``{name: (H, W, 3) uint8}`` to keep for the strips (PNG, base64), or None.
    """
    res = {
        "problem": problem,
        "metrics": {
            **metrics,
            "reached": out.reached, "steps": out.steps, "handle_px": round(float(np.mean(out.distances)), 6),
            "final_handles": [[round(float(v), 4) for v in h] for h in out.handles],
        },
        "timing": {"seconds": out.seconds, "seconds_per_step": out.seconds / max(out.steps, 1)},
        "trace": [round(x, 4) for x in out.trace],
    }
    if images is not None:
        res["images"] = {k: M.png_b64(v) for k, v in images.items()}
    return res


def aggregate_drag(results: list[dict[str, Any]], metrics: dict[str, Any],
                   timing: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A group's ``(metrics, timing)``: the suite's ``metrics`` (``n`` first), then the drag's
    ``reached`` (share), ``steps_mean`` and ``handle_px``; the timing's ``seconds_per_edit`` and
    ``seconds_per_step`` (means over the group), then the suite's own ``timing``."""
    ms = [r["metrics"] for r in results]
    metrics = {
        "n": len(ms), **metrics,
        "reached": M.share([m["reached"] for m in ms]), "steps_mean": M.mean(m["steps"] for m in ms),
        "handle_px": M.mean(m["handle_px"] for m in ms),
    }
    timing = {
        "seconds_per_edit": M.mean(r["timing"]["seconds"] for r in results),
        "seconds_per_step": M.mean(r["timing"]["seconds_per_step"] for r in results),
        **(timing or {}),
    }
    return metrics, timing


class SuiteBase:
    """Defaults of the suite interface: one job per index with no condition (one report group),
    no per-worker state, no whole-group metrics, the strips' final points = the tracked handles,
    no paper figures, and the two timing columns every suite has."""

    name: str
    default_model: str
    default_max_steps: int
    columns: list[tuple[str, str, str]]
    metric_docs: dict[str, str]
    timing_columns = [("seconds_per_edit", "s/edit", ".2f"), ("seconds_per_step", "ms/step", "ms")]
    paper: dict[str, Any] | None = None

    @staticmethod
    def jobs(params: dict[str, Any], n: int) -> list[tuple[int, dict[str, Any]]]:
        return [(i, {}) for i in range(n)]

    @staticmethod
    def group(condition: dict[str, Any]) -> dict[str, Any]:
        return {}

    @staticmethod
    def setup(G: Any, params: dict[str, Any]) -> Any:
        return None

    @staticmethod
    def set_metrics(results: list[dict[str, Any]]) -> dict[str, Any]:
        return {}

    @staticmethod
    def strip_points(result: dict[str, Any]) -> tuple[list, list, list]:
        p = result["problem"]
        return p["handles"], p["targets"], result["metrics"]["final_handles"]
