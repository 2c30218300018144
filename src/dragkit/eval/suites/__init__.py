"""The evaluation suites: ``toy`` (ground truth), ``paired`` (paired image reconstruction), ``landmarks`` (faces).

A suite turns an index into a problem (deterministically, from the seeds
alone, so any worker can build it), runs one edit through
:func:`dragkit.eval.engines.run_drag` and scores it; the report aggregates
the scores per group.  Interface (each module's ``SUITE``):

* ``name``, ``default_model``, ``default_max_steps``;
* ``params(args)`` - its settings from the command line's options (checked; ``SpecError``);
* ``jobs(params, n)`` - ``[(index, condition)]``, ``condition`` a small dict;
* ``setup(G, params)`` - per-worker state (e.g. dlib's models), once per worker;
* ``run(G, state, params, index, condition, variant, max_steps, images)`` -
  one result dict (``problem``, ``metrics``, ``timing``, ``trace``, ``images``);
* ``group(condition)`` - the report row a result belongs to;
* ``aggregate(results)`` - ``(metrics, timing)`` of one group;
* ``set_metrics(results)`` - metrics needing the whole group (e.g. Frechet distances);
* ``columns`` - ``[(key, header, format)]`` for the tables; ``metric_docs``;
* ``error_values(results)`` / ``baseline_values(results)`` - the plotted error, with and without the edit;
* ``strip_points(result)`` - handles, targets and final points drawn on the strips;
* ``paper`` - the paper's figures where the protocol matches (or None).

:mod:`.common` holds what they share: :class:`~.common.SuiteBase` (the
interface's defaults), :func:`~.common.record` (a result's drag fields,
timing and trace) and :func:`~.common.aggregate_drag` (a group's drag
figures and timing).
"""
from __future__ import annotations

from typing import Any

from ...errors import DragkitError

__all__ = ["get_suite", "SUITE_NAMES"]

SUITE_NAMES = ("toy", "paired", "landmarks")


def get_suite(name: str) -> Any:
    """The suite object of that name (``DragkitError`` for an unknown one)."""
    if name == "toy":
        from .toy import SUITE
    elif name == "paired":
        from .paired import SUITE
    elif name == "landmarks":
        from .landmarks import SUITE
    else:
        raise DragkitError(f"unknown suite {name!r}; one of {', '.join(SUITE_NAMES)}")
    return SUITE
