"""``dragkit bench``: seconds per drag step, side by side with the authors' loop, in one run.

For one model (a bundled name or a path, or ``--res R``: a random StyleGAN2
of NVIDIA's config-f widths), and for each ``--threads`` count, it times:

* the authors' drag step (:class:`dragkit.eval.authors.AuthorsLoop`: full
  synthesis with the image, resize to full size, Python loops), without and
  with a mask - the baseline, float32, eager;
* dragkit's step (:meth:`dragkit.DragSession.step`) for each ``--precision``
  (fp32, bf16) and ``--compile`` (off, on), without and with a mask;
* the web app's frame: the full image rendered and PNG-encoded as the app
  sends it (``DragSession.image()`` + ``PNG, compress_level=1``), as frames/s.

Every case runs in its own subprocess (``python -m dragkit.bench --child``)
so that its peak memory is its own and no case inherits another's caches or
compiled graphs.  A case builds the model, places one handle (at
``(0.45 H, 0.5 H)``, target ``H/4`` right and ``H/8`` down) and, with the
mask, a flexible square over the middle half; it times one first step
(imports, reference features, ``torch.compile``'s compilation) and then the
median of ``--steps`` steps.  Peak memory is the growth of the process's
peak RSS (``VmHWM``, reset before the timed steps) over its RSS before them
on the CPU, ``torch.cuda.max_memory_allocated`` growth on CUDA.  Speed
figures are only comparable within one run (a shared machine's load
changes between runs): the ratio column is what to quote, with the load
average the table prints.

Why this module is long (~440 lines): the parent (cases, subprocesses,
the table) and the child (one timed case) are one protocol - the child's
JSON line is the parent's input - and are kept together so that a field
is added in one place.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from .errors import DragkitError

__all__ = ["BenchCase", "run_case", "run_bench", "format_table", "register", "random_generator"]

PRECISION_CHOICES = ("fp32", "bf16")


@dataclass(frozen=True)
class BenchCase:
    """One timed configuration.

    Attributes:
        impl: ``'authors'`` (the baseline loop) or ``'dragkit'``.
        threads: torch CPU threads.
        masked: a mask (flexible middle half) is set.
        precision: ``'fp32'`` or ``'bf16'`` (dragkit only).
        compile: ``torch.compile`` of the windowed run (dragkit only).
    """

    impl: str
    threads: int
    masked: bool
    precision: str = "fp32"
    compile: bool = False


@dataclass
class ModelSpec:
    """Where the model comes from: ``model`` (name or path), or a random generator of ``res`` px."""

    model: str | None = None
    res: int | None = None
    channel_base: int = 32768
    channel_max: int = 512
    w_dim: int = 512
    device: str = "cpu"


@dataclass
class CaseResult:
    case: BenchCase
    sec_per_step: float
    min_sec: float
    first_step_sec: float
    steps: int
    peak_mb: float
    reached_early: bool = False  # the drag met its stop rule during the timed steps (fewer updates timed)
    frame_sec: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def random_generator(res: int, channel_base: int = 32768, channel_max: int = 512, w_dim: int = 512) -> Any:
    """A random StyleGAN2 of ``res`` px with NVIDIA's config-f widths by default (timing only).

    Seeded (``torch.manual_seed(0)``); the noise strengths are set to 0.1 so
    the const noise takes part as in a trained model.
    """
    import torch

    from .nets import Generator

    torch.manual_seed(0)
    G = Generator(w_dim, 0, w_dim, res, channel_base=channel_base, channel_max=channel_max,
                  mapping_kwargs=dict(num_layers=8 if w_dim >= 256 else 2)).eval()
    with torch.no_grad():
        for n, p in G.named_parameters():
            if n.endswith("noise_strength"):
                p.fill_(0.1)
    return G


def _build(spec: ModelSpec) -> tuple[Any, str]:
    if spec.model is not None:
        from .models import load_model

        G = load_model(spec.model, device=spec.device)
        name = spec.model
    else:
        assert spec.res is not None
        G = random_generator(spec.res, spec.channel_base, spec.channel_max, spec.w_dim).to(spec.device)
        name = f"random {spec.res} px (channel_base {spec.channel_base}, channel_max {spec.channel_max})"
    for p in G.parameters():
        p.requires_grad_(False)
    return G, name


def _problem(G: Any, masked: bool):
    import numpy as np

    from .drag.options import image_size

    H, W = image_size(G)
    handle = (round(0.45 * W), round(0.5 * H))
    target = (min(W - 1, handle[0] + max(4, W // 4)), min(H - 1, handle[1] + max(2, H // 8)))
    mask = None
    if masked:
        mask = np.zeros((H, W), dtype=bool)
        mask[H // 4: 3 * H // 4, W // 4: 3 * W // 4] = True
    return handle, target, mask


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_hwm() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := current RSS (Linux >= 4.0)
    except OSError:
        pass


def render_frame(session: Any) -> bytes:
    """The web app's frame: the full image of the session's latent, rendered afresh, as PNG bytes
    (``compress_level=1``, as ``server/drag_run.py`` sends it)."""
    import torch

    from .utils import tensor_to_pil

    with torch.no_grad():
        img = session.G.synthesis(session.latent, noise_mode=session.options.noise_mode)
    buf = io.BytesIO()
    tensor_to_pil(img).convert("RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def run_case(spec: ModelSpec, case: BenchCase, steps: int, frames: int = 0) -> CaseResult:
    """Time one case in this process (:func:`run_bench` runs each in a subprocess)."""
    import torch

    torch.set_num_threads(case.threads)
    cuda = torch.device(spec.device).type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    G, _name = _build(spec)
    handle, target, mask = _problem(G, case.masked)
    from .drag.session import DragOptions, DragSession

    opts = DragOptions(tracking="l2", precision=case.precision, compile=case.compile)
    if case.impl == "authors":
        from .eval.authors import AuthorsLoop

        ws = G.ws_from_seed(0, psi=0.7).to(spec.device)
        obj: Any = AuthorsLoop(G, ws, [handle], [target], opts.resolved(G), mask)

        def step() -> bool:
            return bool(obj.step())
    else:
        obj = DragSession(G, seed=0, psi=0.7, options=opts)
        obj.add_point(handle=handle, target=target)
        if mask is not None:
            obj.set_mask(mask)

        def step() -> bool:
            return bool(obj.step().done)

    sync()
    t0 = time.perf_counter()
    step()  # first step: reference features, allocations, compilation
    sync()
    first = time.perf_counter() - t0
    base = _rss_mb()
    _reset_hwm()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated() / 2**20
    times: list[float] = []
    reached = False
    for _ in range(steps):
        t0 = time.perf_counter()
        done = step()
        sync()
        times.append(time.perf_counter() - t0)
        reached = reached or done
    peak = (torch.cuda.max_memory_allocated() / 2**20 - base_cuda) if cuda else (_hwm_mb() - base)
    frame_sec = None
    if frames > 0 and case.impl == "dragkit":
        render_frame(obj)  # warm
        ft = []
        for _ in range(frames):
            t0 = time.perf_counter()
            render_frame(obj)
            sync()
            ft.append(time.perf_counter() - t0)
        frame_sec = sorted(ft)[len(ft) // 2]
    times.sort()
    return CaseResult(case, times[len(times) // 2] if times else float("nan"), times[0] if times else float("nan"),
                      first, len(times), max(peak, 0.0), reached, frame_sec)


def _child_main(payload: str) -> int:
    d = json.loads(payload)
    r = run_case(ModelSpec(**d["spec"]), BenchCase(**d["case"]), int(d["steps"]), int(d["frames"]))
    print(json.dumps(asdict(r)))
    return 0


def _in_subprocess(spec: ModelSpec, case: BenchCase, steps: int, frames: int) -> CaseResult:
    payload = json.dumps({"spec": asdict(spec), "case": asdict(case), "steps": steps, "frames": frames})
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(case.threads)  # the child's pool size, before torch starts
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out = subprocess.run([sys.executable, "-m", "dragkit.bench", "--child", payload], capture_output=True,
                         text=True, env=env)
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise DragkitError(f"bench case {case} failed: {tail[0][:300]}")
    d = json.loads(out.stdout.strip().splitlines()[-1])
    d["case"] = BenchCase(**d["case"])
    return CaseResult(**d)


def run_bench(spec: ModelSpec, *, threads: Sequence[int] = (1, 2), masks: Sequence[bool] = (False, True),
              precisions: Sequence[str] = ("fp32", "bf16"), compiles: Sequence[bool] = (False,),
              authors: bool = True, steps: int = 5, frames: int = 5, subprocesses: bool = True,
              progress: Any = None) -> list[CaseResult]:
    """Run every case; returns their results in table order (per threads, per mask: authors first)."""
    run = _in_subprocess if subprocesses else run_case
    out: list[CaseResult] = []
    for t in threads:
        for m in masks:
            cases = [BenchCase("authors", t, m)] if authors else []
            cases += [BenchCase("dragkit", t, m, p, c) for p in precisions for c in compiles]
            for i, case in enumerate(cases):
                # frames once per thread count, on the first dragkit case without a mask
                want_frames = frames if (case.impl == "dragkit" and not m and i == (1 if authors else 0)) else 0
                r = run(spec, case, steps, want_frames)
                out.append(r)
                if progress is not None:
                    progress(r)
    return out


HEADER = (f"{'threads':>7} {'mask':>4} {'engine':>8} {'precision':>9} {'compile':>7} {'s/step':>9} "
          f"{'steps/s':>8} {'first step s':>12} {'vs authors':>10} {'peak MB':>8}")


def format_row(r: CaseResult, authors_sec: float | None) -> str:
    """One table row; ``authors_sec``: the authors' s/step for the same threads and mask (the ratio)."""
    c = r.case
    ratio = f"{authors_sec / r.sec_per_step:9.1f}x" if authors_sec and c.impl != "authors" else f"{'-':>10}"
    flag = "*" if r.reached_early else " "
    return (f"{c.threads:>7} {'yes' if c.masked else 'no':>4} {c.impl:>8} "
            f"{c.precision if c.impl == 'dragkit' else 'fp32':>9} "
            f"{('on' if c.compile else 'off') if c.impl == 'dragkit' else '-':>7} "
            f"{r.sec_per_step:9.4f} {1 / r.sec_per_step:8.1f} {r.first_step_sec:12.3f} {ratio} "
            f"{r.peak_mb:8.0f}{flag}")


def format_footer(results: Sequence[CaseResult]) -> str:
    """The frames/s lines and the footnote under the table."""
    lines = []
    for r in results:
        if r.frame_sec is not None:
            lines.append(f"frame (full image + PNG, as the app sends it), {r.case.threads} thread(s): "
                         f"{r.frame_sec * 1000:.1f} ms = {1 / r.frame_sec:.1f} frames/s")
    if any(r.reached_early for r in results):
        lines.append("* the drag met its stop rule during the timed steps: those steps did no update")
    return "\n".join(lines)


def format_table(results: Sequence[CaseResult]) -> str:
    """The table ``dragkit bench`` prints (one row per case; ``vs authors`` = authors' s/step / this s/step)."""
    base = {(r.case.threads, r.case.masked): r.sec_per_step for r in results if r.case.impl == "authors"}
    lines = [HEADER, "-" * len(HEADER)]
    lines += [format_row(r, base.get((r.case.threads, r.case.masked))) for r in results]
    foot = format_footer(results)
    return "\n".join(lines) + ("\n\n" + foot if foot else "")


def _csv_ints(s: str) -> list[int]:
    try:
        out = [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of whole numbers, got {s!r}")
    if not out or any(v < 1 or v > 256 for v in out):
        raise argparse.ArgumentTypeError(f"expected thread counts between 1 and 256, got {s!r}")
    return out


def _csv_choice(choices: Sequence[str]):
    def parse(s: str) -> list[str]:
        out = [v.strip() for v in s.split(",") if v.strip()]
        bad = [v for v in out if v not in choices]
        if not out or bad:
            raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(choices)}, got {s!r}")
        return out
    return parse


def _onoff(s: str) -> list[bool]:
    return [v == "on" for v in _csv_choice(("off", "on"))(s)]


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="seconds per drag step (fp32/bf16, compiled or not, with/without a mask) "
                                     "beside the authors' loop, peak memory, frames/s",
                       description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", default=None, help="bundled model name or checkpoint path (default: toy)")
    src.add_argument("--res", type=int, default=None, help="a random StyleGAN2 of this resolution instead "
                                                           "(NVIDIA config-f widths unless --channel-base/--channel-max)")
    p.add_argument("--channel-base", type=int, default=32768, help="random model: channel_base (default 32768)")
    p.add_argument("--channel-max", type=int, default=512, help="random model: channel_max (default 512)")
    p.add_argument("--w-dim", type=int, default=512, help="random model: w_dim (default 512)")
    p.add_argument("--threads", type=_csv_ints, default=[1, 2], help="comma list of torch CPU thread counts "
                                                                     "(default 1,2)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per case after the first (default 5)")
    p.add_argument("--mask", type=_onoff, default=[False, True], help="off, on or off,on (default off,on)")
    p.add_argument("--precision", type=_csv_choice(PRECISION_CHOICES), default=["fp32", "bf16"],
                   help="comma list of fp32, bf16 (default fp32,bf16)")
    p.add_argument("--compile", type=_onoff, default=[False], help="off, on or off,on (default off)")
    p.add_argument("--no-authors", action="store_true", help="skip the authors'-loop baseline")
    p.add_argument("--frames", type=int, default=5, help="frames to time for frames/s (default 5; 0: none)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    import torch

    if args.res is not None and (args.res < 4 or args.res & (args.res - 1)):
        raise DragkitError(f"--res must be a power of two >= 4, got {args.res}")
    if not 1 <= args.steps <= 10_000:
        raise DragkitError(f"--steps must be between 1 and 10000, got {args.steps}")
    if not 0 <= args.frames <= 10_000:
        raise DragkitError(f"--frames must be between 0 and 10000, got {args.frames}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise DragkitError("--device cuda: no CUDA device here")
    spec = ModelSpec(model=args.model if args.res is None else None, res=args.res,
                     channel_base=args.channel_base, channel_max=args.channel_max, w_dim=args.w_dim,
                     device=args.device)
    if spec.model is None and spec.res is None:
        spec.model = "toy"
    if spec.model is not None:  # fail here, once, if the model does not load
        from .models import resolve_model

        resolve_model(spec.model)
    from .drag.options import native_bf16

    load0 = os.getloadavg()
    what = spec.model if spec.model is not None else f"random {spec.res} px StyleGAN2 (channel_base " \
        f"{spec.channel_base}, channel_max {spec.channel_max}, w_dim {spec.w_dim})"
    print(f"dragkit bench: {what} on {args.device}; torch {torch.__version__}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {'yes' if native_bf16(args.device) else 'no'}; "
          f"{os.cpu_count()} cores, load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    print(f"one handle dragged by (H/4, H/8); median of {args.steps} steps after a first step; each case in its "
          "own process", flush=True)
    print(HEADER + "\n" + "-" * len(HEADER), flush=True)
    base: dict[tuple[int, bool], float] = {}

    def show(r: CaseResult) -> None:  # each row as soon as its case is done
        if r.case.impl == "authors":
            base[(r.case.threads, r.case.masked)] = r.sec_per_step
        print(format_row(r, base.get((r.case.threads, r.case.masked))), flush=True)

    results = run_bench(spec, threads=args.threads, masks=args.mask, precisions=args.precision,
                        compiles=args.compile, authors=not args.no_authors, steps=args.steps, frames=args.frames,
                        progress=show)
    foot = format_footer(results)
    if foot:
        print("\n" + foot)
    load1 = os.getloadavg()
    print(f"load average after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; peak MB = growth of peak memory "
          "during the timed steps")
    if args.json:
        from .utils import atomic_write_bytes

        data = {"model": what, "device": args.device, "torch": torch.__version__,
                "load_before": load0, "load_after": load1,
                "results": [dict(asdict(r), case=asdict(r.case)) for r in results]}
        atomic_write_bytes(args.json, json.dumps(data, indent=1).encode())
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(_child_main(sys.argv[2]))
    from .cli import main

    sys.exit(main(["bench", *sys.argv[1:]]))
