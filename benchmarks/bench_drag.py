"""Seconds per drag step: dragkit against the authors' loop - a thin caller of ``dragkit bench``.

The timing, the baseline (:class:`dragkit.eval.authors.AuthorsLoop`), peak
memory and frames/s are ``dragkit bench``'s (``src/dragkit/bench.py``; its
docstring says what each column is).  This script keeps the old
configuration names and adds the short equivalence check: both
implementations from the same latent and points, a few steps, the latent
and handle differences (L2 tracking, the authors' norm).

Usage::

    python benchmarks/bench_drag.py                         # toy, 128 px, 512 px; 1 and 2 threads; with/without mask
    python benchmarks/bench_drag.py --configs 512 --steps 3 --threads 2 -- --precision fp32 --compile off,on

Arguments after ``--`` go to ``dragkit bench`` as they are.
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: name -> ``dragkit bench`` model arguments
CONFIGS = {
    "toy": ["--model", "toy"],
    "rand64": ["--res", "64", "--channel-base", "2048", "--channel-max", "96", "--w-dim", "128"],
    "128": ["--res", "128", "--channel-base", "16384"],
    "256": ["--res", "256"],
    "512": ["--res", "512"],
}


def equivalence(config: str, steps: int) -> str:
    """The authors' loop and dragkit from the same start for ``steps`` steps: max latent and handle differences."""
    import torch

    from dragkit.bench import ModelSpec, _build, _problem
    from dragkit.drag.session import DragOptions, DragSession
    from dragkit.eval.authors import AuthorsLoop

    args = CONFIGS[config]
    spec = ModelSpec(model="toy") if args[0] == "--model" else ModelSpec(
        res=int(args[1]), **{k.lstrip("-").replace("-", "_"): int(v) for k, v in zip(args[2::2], args[3::2])})
    G, _ = _build(spec)
    handle, target, _mask = _problem(G, False)
    opts = DragOptions(tracking="l2")
    a = AuthorsLoop(G, G.ws_from_seed(0, psi=0.7), [handle], [target], opts.resolved(G))
    d = DragSession(G, seed=0, psi=0.7, options=opts)
    d.add_point(handle=handle, target=target)
    for _ in range(steps):
        a.step()
        d.step()
    diff = float((a.latent() - d.latent).abs().max())
    return (f"equivalence on {config} after {steps} steps (L2 tracking): max |latent diff| {diff:.2e} "
            f"(latent max {float(a.latent().abs().max()):.2f}); handles authors {a.handles_xy()} "
            f"dragkit {[p.handle for p in d.points]}")


def main() -> int:
    argv = sys.argv[1:]
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="toy,128,512", help="comma list of: " + ", ".join(CONFIGS))
    p.add_argument("--steps", type=int, default=0, help="timed steps per case (default: 10, 3 at 512 px)")
    p.add_argument("--threads", default="1,2", help="comma list of thread counts (default 1,2)")
    p.add_argument("--equiv-steps", type=int, default=8, help="steps of the equivalence check (0: none)")
    args = p.parse_args(argv)
    from dragkit.cli import main as dragkit_main

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        if c not in CONFIGS:
            p.error(f"unknown config {c!r}; known: {', '.join(CONFIGS)}")
    for c in configs:
        steps = args.steps or (3 if c == "512" else 10)
        print(f"\n== {c}", flush=True)
        rc = dragkit_main(["bench", *CONFIGS[c], "--threads", args.threads, "--steps", str(steps), *extra])
        if rc:
            return rc
    if args.equiv_steps > 0:
        print("\n" + equivalence("toy" if "toy" in configs else "rand64", args.equiv_steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
