"""Seconds per step of the same drag through the Python API and through ``dragkit drag``, in one run.

The drag is the README's example without its mask (toy model, seed 1, the
disk's centre 8 px to the right), capped at ``--steps``; every run is a
fresh process with ``OMP_NUM_THREADS`` and ``OMP_WAIT_POLICY`` removed from
its environment - what a new user has.  Three ways:

* ``api``: ``from dragkit import ...`` first, as the README does;
* ``api, torch imported first``: ``import torch`` before dragkit (the
  OpenMP policy can no longer be set; dragkit lowers the thread pool
  instead, unless the user chose a count);
* ``cli``: ``python -m dragkit drag --spec ... --report``, its report's
  ``seconds_per_step``.

The ratio api / cli should be about 1 (docs/drag.md, "Threads").  The
machine may be shared: the figures are side by side, run after run, and
each way is repeated ``--repeat`` times (the median is printed).

Usage::

    python benchmarks/bench_api_vs_cli.py [--steps 60] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

API = """
import sys, time
{pre}
from dragkit import load_model, DragSession
G = load_model("toy")
s = DragSession(G, seed=1, psi=0.7)
s.add_point(handle=(12, 13), target=(20, 13))
t0 = time.perf_counter(); steps = 0
for r in s.run(max_steps={steps}):
    steps = r.step
import torch
print(__import__("json").dumps({{"spp": (time.perf_counter() - t0) / max(1, steps),
      "steps": steps, "threads": torch.get_num_threads()}}))
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_api(steps: int, torch_first: bool) -> dict:
    code = API.format(pre="import torch" if torch_first else "", steps=steps)
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_cli(steps: int, tmp: Path) -> dict:
    spec = {"model": "toy", "seed": 1, "psi": 0.7, "points": [{"handle": [12, 13], "target": [20, 13]}],
            "max_steps": steps}
    (tmp / "spec.json").write_text(json.dumps(spec))
    subprocess.run([sys.executable, "-m", "dragkit", "drag", "--spec", str(tmp / "spec.json"),
                    "--out", str(tmp / "out.png"), "--report", str(tmp / "report.json")],
                   env=_env(), capture_output=True, text=True, check=True)
    rep = json.loads((tmp / "report.json").read_text())
    return {"spp": rep["seconds_per_step"], "steps": rep["steps"], "threads": None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    res: dict[str, list[dict]] = {"api": [], "api, torch imported first": [], "cli": []}
    with tempfile.TemporaryDirectory() as d:
        for _ in range(a.repeat):  # interleaved, so that load changes hit every way alike
            res["api"].append(run_api(a.steps, False))
            res["api, torch imported first"].append(run_api(a.steps, True))
            res["cli"].append(run_cli(a.steps, Path(d)))
    cli = statistics.median(r["spp"] for r in res["cli"])
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, {a.repeat} runs each, median:")
    print(f"{'way':28s} {'s/step':>8s} {'steps':>6s} {'threads':>8s} {'vs cli':>7s}")
    for name, rs in res.items():
        spp = statistics.median(r["spp"] for r in rs)
        print(f"{name:28s} {spp:8.4f} {rs[0]['steps']:6d} {str(rs[0]['threads'] or '-'):>8s} {spp / cli:6.2f}x")


if __name__ == "__main__":
    main()
