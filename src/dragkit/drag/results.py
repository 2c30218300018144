"""What the engine reports: :class:`PointPair` and :class:`StepResult`.

A result carries the stop rule's distance, and the rule itself
(:attr:`StepResult.arrived`, :attr:`StepResult.reached`), so whoever shows a
drag - the CLI's report, the web app - reads the engine's verdict instead of
re-deriving it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["PointPair", "StepResult"]


@dataclass(frozen=True)
class PointPair:
    """A handle and its target, ``[x, y]`` pixels."""

    handle: tuple[float, float]
    target: tuple[float, float]


@dataclass(frozen=True)
class StepResult:
    """What one call of :meth:`DragSession.step` saw (or :meth:`~DragSession.status` sees).

    Attributes:
        step: optimisation steps applied in the current drag so far.
        points: handles tracked on the image *before* this call's update
            (for a ``done`` result: on the final image).
        distances: ``|handle - target|`` per point, pixels.
        done: the drag is over (stop rule met, or the end of a ``run``).
        stop_distance: the stop rule's distance for this drag, pixels (the
            ``stop_distance`` option, or the paper's rule for the number of
            points: :func:`~.core.stop_distance_for`).
    """

    step: int
    points: list[PointPair]
    distances: list[float]
    done: bool
    stop_distance: float

    @property
    def arrived(self) -> list[bool]:
        """Per point: within the stop distance of its target (the engine's stop rule)."""
        return [d <= self.stop_distance for d in self.distances]

    @property
    def reached(self) -> bool:
        """Every handle has arrived (the drag stops, or would)."""
        return all(self.arrived)

    def to_json(self) -> dict[str, Any]:
        """``step, points ([x, y] handles), targets, distances, arrived, stop_distance, done, reached``."""
        return {
            "step": self.step,
            "points": [[float(p.handle[0]), float(p.handle[1])] for p in self.points],
            "targets": [[float(p.target[0]), float(p.target[1])] for p in self.points],
            "distances": [float(d) for d in self.distances],
            "arrived": self.arrived,
            "stop_distance": float(self.stop_distance),
            "done": bool(self.done),
            "reached": bool(self.reached),
        }


# ----------------------------------------------------------------------------
