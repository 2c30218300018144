"""``dragkit eval``: the paper's experiments and ground-truth scores, with reports.

Suites (:mod:`dragkit.eval.suites`): ``toy`` (the toy world's oracle),
``paired`` (paired image reconstruction), ``landmarks`` (faces, dlib).
Variants of the settings and the authors'-loop baseline
(:mod:`dragkit.eval.authors`) run side by side on the same edits; jobs run
in this process, in local processes or on Ray (:mod:`dragkit.eval.runner`);
the report (:mod:`dragkit.eval.report`) is JSON, Markdown, plots and strips.
See docs/RESULTS.md.

``EvalConfig``, ``evaluate`` and ``EvalFailed`` are imported lazily so that
``import dragkit.eval`` (and ``dragkit --help``) stays cheap.
"""
from __future__ import annotations

from typing import Any

__all__ = ["EvalConfig", "EvalFailed", "evaluate"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'dragkit.eval' has no attribute {name!r}")
