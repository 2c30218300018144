"""``evaluate(EvalConfig)``: build the jobs of a suite, run them, write the report."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DragkitError
from . import report as R
from .runner import Job, file_sha256, host_info, run_jobs
from .suites import get_suite
from .variants import build_variants

__all__ = ["EvalConfig", "evaluate", "EvalFailed"]


class EvalFailed(DragkitError):
    """Some edits still failed after their retries (the report was written; it lists them)."""


@dataclass
class EvalConfig:
    """One evaluation run.

    Attributes:
        suite: ``'toy'``, ``'paired'`` or ``'landmarks'``.
        model: bundled name, cache name or path (``None``: the suite's default).
        out: folder for ``report.json``, ``report.md``, ``results.jsonl``, plots and strips.
        n: problems (toy: drags per mask state; paired: edits; landmarks: face pairs, each
            dragged with every handle count).
        params: the suite's own settings (``suite.params(args)``).
        presets, sweeps, base, engines: the variants (:func:`dragkit.eval.variants.build_variants`).
        max_steps: step cap per edit (``None``: the suite's, 200 / 100 / 300).
        workers: 0 = in this process; K = K local processes (or, with ``ray``, at most K tasks in flight).
        ray: Ray address (``'auto'``: a local cluster or a new local instance), or None.
        threads: torch threads per worker (results are identical for the same threads and device).
        device: ``'cpu'`` or ``'cuda'``.
        retries: extra attempts of a failed edit.
        strips: how many problems per variant and group keep their images for the strips.
        faults: ``{job id: (attempts that fail, 'raise' | 'exit')}`` - deliberate failures, for tests.
    """

    suite: str
    params: dict[str, Any]
    out: Path
    model: str | None = None
    n: int = 20
    presets: list[str] | None = None
    sweeps: list[str] | None = None
    base: str | None = None
    engines: list[str] | None = None
    max_steps: int | None = None
    workers: int = 0
    ray: str | None = None
    gpus_per_task: float = 0.0
    threads: int = 1
    device: str = "cpu"
    retries: int = 2
    strips: int = 6
    progress: bool = True
    command: str = ""
    faults: dict[str, tuple[int, str]] = field(default_factory=dict)


def _cond_text(cond: dict[str, Any]) -> str:
    return ",".join(f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in cond.items()) or "-"


def make_jobs(suite: Any, params: dict[str, Any], n: int, variants: list[dict], strips: int = 0) -> list[Job]:
    """Every edit of the run: variants x the suite's ``(index, condition)`` list.

    The first ``strips`` jobs of each variant and report group keep their images.
    """
    jobs = []
    seen: dict[tuple, int] = {}
    for vi, v in enumerate(variants):
        for i, cond in suite.jobs(params, n):
            g = (vi, json.dumps(suite.group(cond), sort_keys=True))
            seen[g] = seen.get(g, 0) + 1
            jobs.append(Job(f"{v['label']}/{_cond_text(cond)}/{i}", vi, i, cond, images=seen[g] <= strips))
    return jobs


def _with_new_defaults(prev: dict | None, spec: dict) -> dict | None:
    """``prev`` (a variant recorded by an earlier version) with the options added since at their defaults.

    A run recorded before an option existed ran as that option's default
    does, so resuming it with the default is the same run; any other value
    of the new option is not.
    """
    if not isinstance(prev, dict) or not isinstance(prev.get("options"), dict):
        return prev
    from ..drag.options import DragOptions

    defaults = DragOptions().to_dict()
    added = {k: v for k, v in spec.get("options", {}).items()
             if k not in prev["options"] and k in defaults and v == defaults[k]}
    return {**prev, "options": {**prev["options"], **added}} if added else prev


def _check_run_file(out: Path, identity: dict[str, Any], variants: list[dict]) -> None:
    """Refuse to mix results of another configuration into ``out``; record this one."""
    path = out / "run.json"
    labels = {v["label"]: {"engine": v["engine"], "options": v["options"]} for v in variants}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise DragkitError(f"{path}: not a dragkit eval run file; use another --out folder") from None
        if old.get("identity") != identity:
            diff = sorted(k for k in set(identity) | set(old.get("identity", {}))
                          if identity.get(k) != old.get("identity", {}).get(k))
            raise DragkitError(f"{out} holds results of another evaluation (different {', '.join(diff)}); "
                               "use another --out folder or delete it")
        for label, spec in labels.items():
            prev = _with_new_defaults(old.get("variants", {}).get(label), spec)
            if prev is not None and prev != spec:
                raise DragkitError(f"{out}: variant {label!r} had other settings in the earlier run; "
                                   "use another --out folder or delete it")
        labels = {**old.get("variants", {}), **labels}
    from ..utils import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps({"identity": identity, "variants": labels}, indent=1) + "\n").encode())


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Run (or resume) an evaluation and write its report; returns the report dict.

    Raises:
        DragkitError: bad settings, unknown model, a folder holding another run.
        EvalFailed: edits that still failed after ``retries`` (the report is written first).
    """
    from .. import __version__
    from ..drag.options import image_size
    from ..models import load_model, resolve_model

    suite = get_suite(cfg.suite)
    if cfg.n < 1:
        raise DragkitError(f"--n must be >= 1, got {cfg.n}")
    if cfg.threads < 1:
        raise DragkitError(f"--threads must be >= 1, got {cfg.threads}")
    if cfg.workers < 0:
        raise DragkitError(f"--workers must be >= 0, got {cfg.workers}")
    model = cfg.model or suite.default_model
    path = resolve_model(model)
    G = load_model(path)
    height, width = image_size(G)
    variants = [v.to_dict() for v in build_variants(G, cfg.presets, cfg.sweeps, cfg.base, cfg.engines)]
    max_steps = int(cfg.max_steps if cfg.max_steps is not None else suite.default_max_steps)
    if max_steps < 0:
        raise DragkitError(f"--max-steps must be >= 0, got {max_steps}")
    if cfg.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available() and cfg.ray is None:
            raise DragkitError("--device cuda: no CUDA device here")
    suite.setup(G, cfg.params)  # the suite's dependencies (OpenCV, dlib) are there, before any edit runs
    sha = file_sha256(path)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    identity = {"suite": suite.name, "model_sha256": sha, "params": cfg.params, "max_steps": max_steps,
                "threads": cfg.threads, "device": cfg.device}
    _check_run_file(out, identity, variants)
    jobs = make_jobs(suite, cfg.params, cfg.n, variants, cfg.strips)
    ctx = {"suite": suite.name, "params": cfg.params, "variants": variants, "max_steps": max_steps,
           "threads": cfg.threads, "device": cfg.device, "faults": dict(cfg.faults),
           "model": {"key": sha, "path": str(path), "filename": Path(path).name}}
    host = host_info()
    records, stats = run_jobs(ctx, jobs, out, workers=cfg.workers, ray=cfg.ray, gpus_per_task=cfg.gpus_per_task,
                              retries=cfg.retries, progress=cfg.progress)
    procs: dict[tuple, int] = {}
    for j in jobs:
        rec = records.get(j.id)
        if rec and rec.get("status") == "ok":
            w = rec["worker"]
            k = (w["host"], w["pid"])
            procs[k] = max(procs.get(k, 0), int(w["model_loads"]))
    meta = {
        "suite": suite.name, "command": cfg.command, "created": R.now_utc(), "dragkit": __version__,
        "model": {"name": str(model), "path": str(path), "resolution": int(G.img_resolution), "width": width,
                  "height": height, "sha256": sha},
        "config": {"n": cfg.n, "max_steps": max_steps, "threads": cfg.threads, "device": cfg.device,
                   "params": cfg.params},
        "runner": {"mode": stats.mode, "workers": stats.workers, "ray": cfg.ray, "jobs": stats.total,
                   "resumed": stats.resumed, "retried": stats.retried, "failed": stats.failed,
                   "worker_processes": len(procs), "model_loads": sum(procs.values()), "seconds": stats.seconds,
                   "host": host},
    }
    report, by = R.build_report(suite, meta, variants, jobs, records)
    R.write_report(suite, report, by, out, cfg.strips)
    missing = [f["id"] for f in stats.failed]
    if missing:
        raise EvalFailed(f"{len(missing)} of {len(jobs)} edits failed after {cfg.retries} retries "
                         f"(first: {missing[0]}); the report lists them: {out / 'report.md'}")
    return report
