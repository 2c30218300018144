"""The CPU thread pool tuned for a small or shared machine, once, for every entry point.

On a machine where other work uses the cores (a training job, a browser, a
second drag), PyTorch's OpenMP threads *spin* while they wait for each
other, and a drag step of a small model runs 2-10x slower than with one
thread (``benchmarks/bench_api_vs_cli.py``; docs/drag.md, "Threads on a
busy machine").  Two remedies, applied in this order:

1. ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep instead of spinning).
   It is read once, when the OpenMP runtime loads with ``import torch``, so
   :func:`set_wait_policy` runs when ``dragkit`` itself is imported (the
   package's ``__init__``) - before torch in the usual order
   (``from dragkit import ...`` first).  A policy already in the environment
   is kept.
2. If torch was imported *before* dragkit with no policy set, spinning
   threads are already running; :func:`tune_threads` (called once by
   :func:`dragkit.load_model` and by every ``DragSession``) then lowers the
   pool to half the cores (at most 8; ``dragkit serve``'s rule,
   :func:`default_threads`) - unless the thread count was chosen by the user:
   ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` in the environment, or a
   ``torch.set_num_threads`` to anything but torch's start-up default.

The CLI gets the same through the same two functions.
"""
from __future__ import annotations

import os
import sys

__all__ = ["set_wait_policy", "tune_threads", "default_threads", "policy_applied"]

#: whether OMP_WAIT_POLICY was in the environment (ours or the user's) before torch loaded
policy_applied: bool | None = None
_tuned = False


def set_wait_policy() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless torch is already imported or a policy is set.

    Returns whether a wait policy is in force for this process's OpenMP runtime."""
    global policy_applied
    if policy_applied is None:
        if "torch" not in sys.modules:
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            policy_applied = True
        else:
            policy_applied = "OMP_WAIT_POLICY" in os.environ
    return policy_applied


def default_threads(cpus: int) -> int:
    """Half the cores, at most 8 (at least 1): room for the other work on a shared machine."""
    return max(1, min(8, cpus // 2))


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _physical_cores() -> int | None:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            cores = {line for line in f if line.startswith(("physical id", "core id"))}
        # pairs of (physical id, core id) lines: the set counts distinct values of each kind
        phys = {c for c in cores if c.startswith("physical id")}
        ids = {c for c in cores if c.startswith("core id")}
        return max(1, len(phys)) * len(ids) or None
    except OSError:
        return None


def tune_threads() -> int:
    """Once per process: lower torch's thread pool on a spinning OpenMP runtime (module docstring).

    Never changes a thread count the user chose.  Returns the thread count in force."""
    global _tuned
    import torch

    if _tuned:
        return torch.get_num_threads()
    _tuned = True
    if set_wait_policy():
        return torch.get_num_threads()
    if any(v in os.environ for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        return torch.get_num_threads()
    n = torch.get_num_threads()
    startup_defaults = {os.cpu_count() or 1, _cpus(), _physical_cores()}
    if n in startup_defaults:
        want = default_threads(_cpus())
        if want < n:
            torch.set_num_threads(want)
    return torch.get_num_threads()
