"""Running an evaluation's jobs: in this process, in K local processes, or as Ray tasks.

A *job* is one edit: ``(variant, index, condition)``.  Everything a job
needs follows from the run's configuration and its own fields, so any
worker can run any job and the same job gives the same numbers wherever it
runs (same device and thread count: each worker uses ``threads`` torch
threads, one by default).  Each worker loads the model once and keeps it
(and the suite's own state, e.g. dlib's models) for every job it gets.

Results stream to ``DIR/results.jsonl`` (one JSON object a line) as they
finish, in completion order; the report orders them by job.  A run that is
interrupted (Ctrl-C, a killed process, a lost cluster) resumes from that
file when the same command runs again: jobs already there are not run
again; a torn last line is dropped.  ``DIR/run.json`` holds the
configuration; a different configuration in the same folder is refused.
A job that raises, or whose worker dies, is retried up to ``retries``
times; what was retried and what still failed is in the report.

Backends:

* sequential (``workers=0``): jobs run in this process, in order;
* local (``workers=K``): a pool of K spawned processes
  (:class:`concurrent.futures.ProcessPoolExecutor`); a worker that dies
  (say, killed for memory) breaks the pool, which is rebuilt and its
  in-flight jobs retried;
* Ray (``ray=ADDRESS``; ``auto`` = a running local cluster, else a new
  local instance): one task per job (``num_cpus=threads``,
  ``num_gpus=gpus_per_task``); the model files travel once through Ray's
  object store, so workers on other machines need dragkit but not the
  model; at most ``workers`` tasks in flight (default: the cluster's CPUs /
  threads).

Why this module is long (~450 lines): three backends behind one driver
(:func:`run_jobs`), which owns the retry, resume and progress rules they
share; each backend is a small class, and splitting them out would spread
that one contract over four files.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import DragkitError

__all__ = ["Job", "execute", "run_jobs", "read_results", "model_files", "InjectedFailure"]

RESULTS = "results.jsonl"


class InjectedFailure(RuntimeError):
    """Raised by a job on purpose (tests of the retry path; ``faults`` of the context)."""


@dataclass(frozen=True)
class Job:
    id: str
    variant: int
    index: int
    condition: dict
    images: bool = False  # keep the before/after images (the first problems of each group)

    def to_dict(self, attempt: int) -> dict[str, Any]:
        return {"id": self.id, "variant": self.variant, "index": self.index, "condition": self.condition,
                "images": self.images, "attempt": attempt}


# ----------------------------------------------------------------------------
# The worker side


_WORKER: dict[str, Any] = {"key": None, "loads": 0}


def model_files(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """The files that make the model at ``path`` (native: the ``.safetensors`` and its ``.json``), by name."""
    p = Path(path)
    files = {p.name: p.read_bytes()}
    if p.suffix.lower() in (".safetensors", ".json"):
        for q in (p.with_suffix(".safetensors"), p.with_suffix(".json")):
            if q.is_file():
                files[q.name] = q.read_bytes()
    return files


def _load_model(ctx: dict[str, Any], fetch: Callable[[], dict[str, bytes]] | None) -> None:
    """Load the context's model into this process (once per worker and model)."""
    import torch

    from ..models import load_model
    from .suites import get_suite

    # one worker process may serve several runs (this process, in sequential mode): the model, the
    # suite and its state are kept for as long as the run's model, suite and device stay the same
    key = (ctx["model"]["key"], ctx["suite"], ctx["device"], json.dumps(ctx["params"], sort_keys=True))
    if _WORKER["key"] == key:
        return
    torch.set_num_threads(int(ctx["threads"]))
    if fetch is not None:  # Ray: the files come through the object store
        folder = Path(tempfile.mkdtemp(prefix="dragkit-eval-model-"))
        files = fetch()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        path = folder / ctx["model"]["filename"]
    else:
        path = Path(ctx["model"]["path"])
    G = load_model(path, device=ctx["device"])
    G.eval()
    for p in G.parameters():
        p.requires_grad_(False)
    suite = get_suite(ctx["suite"])
    _WORKER.update(key=key, G=G, suite=suite, state=suite.setup(G, ctx["params"]), loads=_WORKER["loads"] + 1)


def execute(ctx: dict[str, Any], job: dict[str, Any], fetch: Callable[[], dict[str, bytes]] | None = None) -> dict:
    """Run one job in this process; returns its result record (``status: ok``). Raises on failure."""
    from .variants import Variant

    fault = ctx.get("faults", {}).get(job["id"])
    if fault is not None and job["attempt"] < fault[0]:
        if fault[1] == "exit":
            os._exit(17)  # a dying worker
        raise InjectedFailure(f"injected failure of {job['id']} (attempt {job['attempt']})")
    _load_model(ctx, fetch)
    import torch

    torch.set_num_threads(int(ctx["threads"]))
    v = ctx["variants"][job["variant"]]
    variant = Variant(v["label"], v["engine"], v["options"])
    want_images = bool(job.get("images"))
    res = _WORKER["suite"].run(_WORKER["G"], _WORKER["state"], ctx["params"], job["index"], job["condition"],
                               variant, int(ctx["max_steps"]), want_images)
    res.update({"id": job["id"], "status": "ok", "variant": v["label"], "index": job["index"],
                "condition": job["condition"], "attempts": job["attempt"] + 1,
                "worker": {"pid": os.getpid(), "host": socket.gethostname(), "model_loads": _WORKER["loads"]}})
    return res


def _pool_init(ctx: dict[str, Any]) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _load_model(ctx, None)


def _pool_execute(ctx: dict[str, Any], job: dict[str, Any]) -> dict:
    return execute(ctx, job)


def _ray_execute(ctx: dict[str, Any], holder: list, job: dict[str, Any]) -> dict:
    import ray

    return execute(ctx, job, fetch=lambda: ray.get(holder[0]))


# ----------------------------------------------------------------------------
# Results file


def read_results(path: Path) -> dict[str, dict]:
    """The latest record of each job id in a ``results.jsonl``; a torn last line is cut off the file."""
    out: dict[str, dict] = {}
    if not path.is_file():
        return out
    data = path.read_bytes()
    good = data.rfind(b"\n") + 1
    if good < len(data):  # a killed writer left half a line
        with open(path, "r+b") as fh:
            fh.truncate(good)
        data = data[:good]
    for line in data.decode("utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "id" in rec:
            out[rec["id"]] = rec
    return out


# ----------------------------------------------------------------------------
# Backends: each yields (job, attempt, record or None, error text or None, retryable)
#
# A DragkitError raised by a job is a property of its problem (say, a model
# whose samples the toy oracle cannot read): it is recorded at once, not
# retried.  Anything else (a crash, a dying worker, a lost node) is retried.


def _retryable(exc: BaseException | None) -> bool:
    return not isinstance(exc, DragkitError)


class _Sequential:
    mode = "sequential"

    def __init__(self, ctx: dict[str, Any]) -> None:
        import torch

        self.ctx = ctx
        self._threads = torch.get_num_threads()

    def run(self, queue: list[tuple[Job, int]]) -> Iterator[tuple[Job, int, dict | None, str | None, bool]]:
        while queue:
            job, attempt = queue.pop(0)
            try:
                rec = execute(self.ctx, job.to_dict(attempt))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure of a job is recorded (and maybe retried)
                yield job, attempt, None, _describe(exc), _retryable(exc)
            else:
                yield job, attempt, rec, None, False

    def close(self) -> None:
        import torch

        torch.set_num_threads(self._threads)


def _describe(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


class _LocalPool:
    mode = "local"

    def __init__(self, ctx: dict[str, Any], workers: int) -> None:
        self.ctx = ctx
        self.workers = workers
        self.pool = None

    def _new_pool(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_pool_init, initargs=(self.ctx,))

    def run(self, queue: list[tuple[Job, int]]) -> Iterator[tuple[Job, int, dict | None, str | None, bool]]:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        self.pool = self._new_pool()
        inflight: dict[Any, tuple[Job, int]] = {}
        while queue or inflight:
            broken = False
            while queue and len(inflight) < 2 * self.workers:
                job, attempt = queue.pop(0)
                try:
                    fut = self.pool.submit(_pool_execute, self.ctx, job.to_dict(attempt))
                except BrokenProcessPool:
                    queue.insert(0, (job, attempt))
                    broken = True
                    break
                inflight[fut] = (job, attempt)
            if not broken:
                done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                for fut in done:
                    job, attempt = inflight.pop(fut)
                    exc = fut.exception()
                    if exc is None:
                        yield job, attempt, fut.result(), None, False
                    else:
                        broken = broken or isinstance(exc, BrokenProcessPool)
                        what = "worker process died" if isinstance(exc, BrokenProcessPool) else _describe(exc)
                        yield job, attempt, None, what, _retryable(exc)
            if broken:  # every job in flight died with the pool
                for fut, (job, attempt) in list(inflight.items()):
                    yield job, attempt, None, "worker process died", True
                inflight.clear()
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool = self._new_pool()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


class _Ray:
    mode = "ray"

    def __init__(self, ctx: dict[str, Any], address: str, workers: int, gpus_per_task: float) -> None:
        try:
            import ray
        except ImportError:
            raise DragkitError("--ray needs Ray: pip install 'dragkit[ray]'") from None
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            import dragkit

            src = str(Path(dragkit.__file__).resolve().parents[1])
            env = {"env_vars": {"PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                                "OMP_WAIT_POLICY": "PASSIVE"}}
            if address == "auto":
                try:
                    ray.init(address="auto", runtime_env=env, logging_level="ERROR", log_to_driver=False)
                except (ConnectionError, RuntimeError, ValueError):
                    ray.init(num_cpus=max(workers, 1) * int(ctx["threads"]) if workers else None, runtime_env=env,
                             include_dashboard=False, logging_level="ERROR", log_to_driver=False)
            else:
                ray.init(address=address, runtime_env=env, logging_level="ERROR", log_to_driver=False)
            self.started = True
        total = int(ray.cluster_resources().get("CPU", 1))
        self.workers = workers or max(1, total // max(int(ctx["threads"]), 1))
        self.ctx = ctx
        self.holder = [ray.put(model_files(ctx["model"]["path"]))]
        self.inflight: dict[Any, tuple[Job, int]] = {}
        self.task = ray.remote(_ray_execute).options(num_cpus=int(ctx["threads"]), num_gpus=gpus_per_task,
                                                     max_retries=0)

    def run(self, queue: list[tuple[Job, int]]) -> Iterator[tuple[Job, int, dict | None, str | None, bool]]:
        ray = self.ray
        inflight = self.inflight
        while queue or inflight:
            while queue and len(inflight) < self.workers:
                job, attempt = queue.pop(0)
                inflight[self.task.remote(self.ctx, self.holder, job.to_dict(attempt))] = (job, attempt)
            done, _ = ray.wait(list(inflight), num_returns=1)
            for ref in done:
                job, attempt = inflight.pop(ref)
                try:
                    rec = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    text = str(cause).splitlines()[0] if str(cause) else ""
                    yield job, attempt, None, f"{type(cause).__name__}: {text}", _retryable(cause)
                except ray.exceptions.RayError as exc:
                    yield job, attempt, None, f"{type(exc).__name__} (worker died or was lost)", True
                else:
                    yield job, attempt, rec, None, False

    def close(self) -> None:
        for ref in list(self.inflight):  # an interrupted run: stop what is still running
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        self.inflight.clear()
        if self.started:
            self.ray.shutdown()


# ----------------------------------------------------------------------------
# The driver


@dataclass
class RunStats:
    mode: str
    workers: int
    total: int
    resumed: int
    retried: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def run_jobs(
    ctx: dict[str, Any], jobs: list[Job], out: Path, *, workers: int = 0, ray: str | None = None,
    gpus_per_task: float = 0.0, retries: int = 2, progress: bool = True,
) -> tuple[dict[str, dict], RunStats]:
    """Run every job of ``jobs`` not yet in ``out/results.jsonl``; returns ``(records by id, stats)``."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS
    records = read_results(path)
    wanted = {j.id for j in jobs}
    done = {i for i, r in records.items() if r.get("status") == "ok" and i in wanted}
    queue = [(j, 0) for j in jobs if j.id not in done]
    if ray is not None:
        backend: Any = _Ray(ctx, ray, workers, gpus_per_task)
        nworkers = backend.workers
    elif workers and workers > 0:
        backend = _LocalPool(ctx, workers)
        nworkers = workers
    else:
        backend = _Sequential(ctx)
        nworkers = 1
    stats = RunStats(mode=backend.mode, workers=nworkers, total=len(jobs), resumed=len(done))
    errors: dict[str, list[str]] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), initial=len(done), unit="edit", desc=f"eval {ctx['suite']}", file=sys.stderr,
                   dynamic_ncols=True, smoothing=0.05)
    t0 = time.perf_counter()
    try:
        with open(path, "a", encoding="utf-8") as fh:
            for job, attempt, rec, err, retryable in backend.run(queue):
                if rec is None:
                    errors.setdefault(job.id, []).append(err or "unknown error")
                    if retryable and attempt < retries:
                        queue.append((job, attempt + 1))
                        if bar is not None:
                            bar.set_postfix_str(f"retrying {job.id}")
                        continue
                    rec = {"id": job.id, "status": "failed", "variant": ctx["variants"][job.variant]["label"],
                           "index": job.index, "condition": job.condition, "attempts": attempt + 1,
                           "errors": errors[job.id]}
                    stats.failed.append({"id": job.id, "attempts": attempt + 1, "errors": errors[job.id]})
                elif job.id in errors:
                    rec["errors"] = errors[job.id]
                    stats.retried.append({"id": job.id, "attempts": attempt + 1, "errors": errors[job.id]})
                fh.write(json.dumps(rec, separators=(",", ":"), allow_nan=False) + "\n")
                fh.flush()
                records[job.id] = rec
                if bar is not None:
                    bar.update(1)
                    if stats.failed:
                        bar.set_postfix_str(f"{len(stats.failed)} failed")
    finally:
        if bar is not None:
            bar.close()
        backend.close()
    stats.seconds = time.perf_counter() - t0
    return records, stats


def file_sha256(path: Path) -> str:
    """SHA-256 of the model's files (identity of a run's model)."""
    h = hashlib.sha256()
    for name, data in sorted(model_files(path).items()):
        h.update(name.encode() + b"\0")
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def host_info() -> dict[str, Any]:
    """What the timings were measured on."""
    import torch

    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        load = None
    return {"host": socket.gethostname(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "load_average": load}
