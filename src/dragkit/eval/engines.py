"""One drag, run by dragkit's engine or by the authors'-loop baseline, with what an evaluation records."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..drag.core import stop_distance_for
from ..drag.session import DragOptions, DragSession

__all__ = ["ENGINES", "DragOutcome", "run_drag"]

ENGINES = ("dragkit", "authors")


@dataclass
class DragOutcome:
    """The end of one drag.

    Attributes:
        image: ``(1, 3, H, W)`` final image in [-1, 1] (CPU).
        latent: ``(1, num_ws, w_dim)`` final codes (CPU).
        handles: final handles ``[x, y]``, tracked on the final image.
        distances: ``|handle - target|`` per point, pixels (the engine's belief).
        steps: optimisation steps applied.
        reached: the stop rule was met (every handle within the stop distance).
        seconds: wall time of the drag loop (tracking and updates; not the final image).
        trace: mean handle distance (px) before each step, then the final one (``steps + 1`` values).
    """

    image: torch.Tensor
    latent: torch.Tensor
    handles: list[tuple[float, float]]
    distances: list[float]
    steps: int
    reached: bool
    seconds: float
    trace: list[float]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_drag(
    G: Any, ws: torch.Tensor, handles: Sequence[Sequence[float]], targets: Sequence[Sequence[float]],
    options: DragOptions, *, mask: np.ndarray | None = None, max_steps: int = 300, engine: str = "dragkit",
) -> DragOutcome:
    """Drag ``handles`` to ``targets`` from the codes ``ws`` ``(1, num_ws, w_dim)``.

    ``engine``: ``'dragkit'`` (:class:`DragSession`) or ``'authors'``
    (:class:`dragkit.eval.authors.AuthorsLoop`, the same options).
    ``mask``: ``(H, W)`` bool, True = flexible.  ``max_steps = 0`` is the
    no-edit baseline: nothing runs, the outcome is the starting image with
    the handles where they were put.  Raises ``SpecError`` for bad options
    or points, ``ValueError`` for an unknown engine.
    """
    dev = next(G.parameters()).device
    ws = ws.to(dev)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if max_steps == 0:
        opts = options.resolved(G)
        dist = [math.dist(h, t) for h, t in zip(handles, targets)]
        with torch.no_grad():
            img = G.synthesis(ws, noise_mode=opts.noise_mode)
        return DragOutcome(image=img.detach().cpu(), latent=ws.detach().cpu(),
                           handles=[(float(h[0]), float(h[1])) for h in handles], distances=dist, steps=0,
                           reached=all(d <= stop_distance(opts, len(dist)) for d in dist), seconds=0.0,
                           trace=[float(np.mean(dist))])
    if engine == "dragkit":
        s = DragSession.from_latent(G, ws, options=options)
        for h, t in zip(handles, targets):
            s.add_point(handle=(float(h[0]), float(h[1])), target=(float(t[0]), float(t[1])))
        if mask is not None:
            s.set_mask(mask)
        trace: list[float] = []
        _sync(dev)
        t0 = time.perf_counter()
        last = None
        for last in s.run(max_steps=max_steps):
            trace.append(float(np.mean(last.distances)))
        _sync(dev)
        seconds = time.perf_counter() - t0
        assert last is not None
        # run() yields one result per update and a final done one tracked on the final image
        latent = s.latent.detach()
        with torch.no_grad():
            img = G.synthesis(latent, noise_mode=s.options.noise_mode)
        return DragOutcome(
            image=img.detach().cpu(), latent=latent.cpu(), handles=[tuple(p.handle) for p in last.points],
            distances=list(last.distances), steps=int(last.step), reached=bool(last.reached), seconds=seconds,
            trace=trace,
        )
    if engine == "authors":
        from .authors import AuthorsLoop

        opts = options.resolved(G)
        loop = AuthorsLoop(G, ws, handles, targets, opts, mask)
        stop_d = loop.stop_d
        trace = []
        steps = 0
        _sync(dev)
        t0 = time.perf_counter()
        stopped = False
        while steps < max_steps:
            stopped = loop.step()  # tracks on the current latent, then updates unless the rule is met
            trace.append(float(np.mean(loop.distances())))
            if stopped:
                break
            steps += 1
        if not stopped:
            loop.track()
            trace.append(float(np.mean(loop.distances())))
        _sync(dev)
        seconds = time.perf_counter() - t0
        dist = loop.distances()
        latent = loop.latent()
        with torch.no_grad():
            img = G.synthesis(latent, noise_mode=opts.noise_mode)
        return DragOutcome(
            image=img.detach().cpu(), latent=latent.cpu(), handles=loop.handles_xy(), distances=dist, steps=steps,
            reached=all(d <= stop_d for d in dist), seconds=seconds, trace=trace,
        )
    raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")


def stop_distance(options: DragOptions, num_points: int) -> float:
    """The stop distance a drag of ``num_points`` points uses under ``options``."""
    return options.stop_distance if options.stop_distance is not None else stop_distance_for(num_points)
