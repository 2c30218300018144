"""``dragkit eval SUITE --model M [--n N] [--workers K | --ray ADDRESS] --out DIR``."""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from ..drag.options import OPTION_NAMES

__all__ = ["register", "run"]

SUITES = ("toy", "paired", "landmarks")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="score the drag engine: toy-world ground truth, paired reconstruction, face landmarks",
        description="Run an evaluation suite and write DIR/report.json, DIR/report.md (tables, plots, "
                    "before/after strips) and DIR/results.jsonl (streamed; an interrupted run resumes from it). "
                    "See docs/RESULTS.md.",
    )
    p.add_argument("suite", choices=SUITES, help="toy (oracle ground truth), paired (paired image reconstruction), "
                                                 "landmarks (dlib face landmarks)")
    p.add_argument("--model", default=None, help="bundled name, cache name or path (default: toy; landmarks: faces128)")
    p.add_argument("--out", required=True, help="output folder (reused to resume)")
    p.add_argument("--n", type=int, default=20, help="problems (default 20); toy: per mask state, landmarks: face "
                                                     "pairs, each dragged with every handle count")
    p.add_argument("--first-seed", type=int, default=None, help="first model seed (default: toy 1000, paired 5000, "
                                                                "landmarks 0)")
    p.add_argument("--psi", type=float, default=0.7, help="truncation of the samples (default 0.7)")
    p.add_argument("--max-steps", type=int, default=None, help="step cap (default: toy 200, paired 100, landmarks 300)")
    run_on = p.add_mutually_exclusive_group()
    run_on.add_argument("--workers", type=int, default=0, help="local worker processes (default 0: this process)")
    run_on.add_argument("--ray", default=None, metavar="ADDRESS",
                        help="run the edits as Ray tasks: a cluster address, or auto (a local cluster, else a new "
                             "local instance); needs dragkit[ray]")
    p.add_argument("--ray-tasks", type=int, default=0, help="with --ray: at most this many tasks in flight "
                                                            "(default: the cluster's CPUs / threads)")
    p.add_argument("--gpus-per-task", type=float, default=0.0, help="with --ray: GPUs each task asks for")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--retries", type=int, default=2, help="extra attempts of a failed edit (default 2)")
    v = p.add_argument_group("variants (side by side on the same edits)")
    v.add_argument("--variants", default=None, help="comma list of presets: default, paper, authors-code")
    v.add_argument("--sweep", action="append", default=None, metavar="KEY=V1,V2",
                   help="one drag option at several values, one at a time around the base (repeatable); keys: "
                        + ", ".join(OPTION_NAMES) + " (docs/drag.md; flags take true/false)")
    v.add_argument("--base", default=None, metavar="KEY=V,...", help="drag options every variant starts from")
    v.add_argument("--engine", default="dragkit", help="dragkit, authors (the authors' loop baseline) or both: "
                                                       "dragkit,authors")
    p.add_argument("--strips", type=int, default=6, help="examples per variant and group in the before/after strips")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("suite options (checked by each suite's params())")
    g.add_argument("--handles", default=None, help="toy: handle counts cycled over the problems, from 1,2,3 "
                                                   "(default 1,2,3); landmarks: counts from 1-68 (default 1,5,68)")
    g.add_argument("--mask", choices=("both", "on", "off"), default="both",
                   help="toy: drag each problem with and/or without the mask (default both)")
    g.add_argument("--mask-margin", type=float, default=5.0,
                   help="toy: flexible band = the object + this many px (at 32 px) around its path (default 5)")
    g.add_argument("--perturb", type=float, default=0.3,
                   help="paired: fraction of the way w1's first 6 codes move towards another sample's (default 0.3)")
    g.add_argument("--pairs", type=int, default=32, help="paired: handle -> target pairs from the flow (default 32)")
    p.set_defaults(func=run)


def _command(args: argparse.Namespace) -> str:
    """The canonical command line of a run (what report.md shows)."""
    parts = ["dragkit", "eval", args.suite]
    defaults = {"model": None, "n": 20, "first_seed": None, "psi": 0.7, "max_steps": None, "workers": 0, "ray": None,
                "ray_tasks": 0, "gpus_per_task": 0.0, "threads": 1, "device": "cpu", "retries": 2, "variants": None,
                "base": None, "engine": "dragkit", "strips": 6, "handles": None, "mask": "both", "mask_margin": 5.0,
                "perturb": 0.3, "pairs": 32}
    for key, default in defaults.items():
        val = getattr(args, key, default)
        if val != default:
            parts += [f"--{key.replace('_', '-')}", str(val)]
    for s in args.sweep or []:
        parts += ["--sweep", s]
    parts += ["--out", str(args.out)]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    from ..errors import DragkitError
    from .api import EvalConfig, evaluate
    from .report import markdown_tables
    from .suites import get_suite

    suite = get_suite(args.suite)
    if args.ray is None and args.ray_tasks:
        raise DragkitError("--ray-tasks needs --ray")
    cfg = EvalConfig(
        suite=args.suite, params=suite.params(args), out=Path(args.out), model=args.model, n=args.n,
        presets=[x.strip() for x in args.variants.split(",") if x.strip()] if args.variants else None,
        sweeps=args.sweep, base=args.base, engines=[e.strip() for e in args.engine.split(",") if e.strip()],
        max_steps=args.max_steps, workers=args.ray_tasks if args.ray is not None else args.workers, ray=args.ray,
        gpus_per_task=args.gpus_per_task, threads=args.threads, device=args.device, retries=args.retries,
        strips=args.strips, progress=not args.quiet, command=_command(args),
    )
    try:
        report = evaluate(cfg)
    except KeyboardInterrupt:
        import sys

        print(f"dragkit: interrupted; the results so far are in {Path(args.out) / 'results.jsonl'}: run the same "
              "command again to resume", file=sys.stderr)
        return 130
    print(markdown_tables(suite, report))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0
