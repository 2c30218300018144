"""Seconds per drag step: dragkit against a straightforward port of the authors' loop.

The baseline is :class:`dragkit.eval.authors.AuthorsLoop` (also what
``dragkit eval --engine authors`` scores): the authors' DragGAN drag step
(``viz/renderer.py``, ``Renderer._render_drag_impl``) re-written from
reading it - full synthesis with the image every step, ``F.interpolate`` to
full size, Python loops over points, ``torch.where`` disks, ``grid_sample``;
its module docstring lists the small departures.

dragkit's step (``DragSession.step``) runs the synthesis only up to the
feature block, and, with no mask, only on the window of each block that
the handles' neighbourhood depends on; it samples features by bilinear
gathers at exactly the pixels the loss and the tracker read.

Each (config, implementation) pair runs in its own subprocess so that peak
memory (``ru_maxrss`` growth after the model is built) is its own; the
model, latent and points are the same in both (seeded).  A short
equivalence check compares the two implementations' handles and latents
after a few steps (L2 tracking, the authors' norm, for that check).

Usage::

    python benchmarks/bench_drag.py                     # toy (if bundled), 128 px, 512 px
    python benchmarks/bench_drag.py --configs 512 --steps 3 --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# OpenMP threads that spin while waiting make every small op crawl when the
# cores are shared (a training job beside us); passive waiting costs nothing
# when they are not.  Must be set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

CONFIGS = {
    # name: (description, generator kwargs or None for the bundled toy model, feature block)
    "toy": ("bundled toy model (64 px)", None, None),
    "rand64": ("random 64 px, toy architecture", dict(z_dim=128, w_dim=128, img_resolution=64,
                                                      channel_base=2048, channel_max=96, map_layers=2), None),
    "128": ("random 128 px StyleGAN2 (512-d, channel_base 16384)", dict(z_dim=512, w_dim=512, img_resolution=128,
                                                                         channel_base=16384, channel_max=512, map_layers=8), None),
    "512": ("random 512 px StyleGAN2 (config-f widths)", dict(z_dim=512, w_dim=512, img_resolution=512,
                                                              channel_base=32768, channel_max=512, map_layers=8), None),
}


def build(config: str):
    from dragkit.nets import Generator

    desc, kw, _ = CONFIGS[config]
    if kw is None:
        from dragkit import load_model

        G = load_model("toy")
    else:
        torch.manual_seed(0)
        G = Generator(kw["z_dim"], 0, kw["w_dim"], kw["img_resolution"], channel_base=kw["channel_base"],
                      channel_max=kw["channel_max"], mapping_kwargs=dict(num_layers=kw["map_layers"])).eval()
        with torch.no_grad():  # random generators have zero noise strength; give the noise a part
            for n, p in G.named_parameters():
                if n.endswith("noise_strength"):
                    p.fill_(0.1)
    for p in G.parameters():
        p.requires_grad_(False)
    return G


def problem(G, masked: bool):
    """Same latent, points and options for both implementations."""
    from dragkit.drag.session import DragOptions

    H = G.img_resolution
    ws = G.ws_from_seed(0, psi=0.7)
    handle = (round(0.45 * H), round(0.5 * H))
    target = (round(0.45 * H) + max(4, H // 8), round(0.5 * H) + max(2, H // 16))
    opts = DragOptions(tracking="l2").resolved(G)
    mask = None
    if masked:
        import numpy as np

        mask = np.zeros((H, H), dtype=bool)
        mask[H // 4: 3 * H // 4, H // 4: 3 * H // 4] = True
    return ws, [handle], [target], opts, mask


def make(impl, G, masked):
    ws, points, targets, opts, mask = problem(G, masked)
    if impl == "authors":
        from dragkit.eval.authors import AuthorsLoop

        return AuthorsLoop(G, ws, points, targets, opts, mask)
    from dragkit.drag.session import DragSession

    s = DragSession.from_latent(G, ws, options=opts)
    for h, t in zip(points, targets):
        s.add_point(handle=h, target=t)
    if mask is not None:
        s.set_mask(mask)
    return s


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def child(config: str, impl: str, steps: int, masked: bool) -> dict:
    G = build(config)
    obj = make(impl, G, masked)
    obj.step()  # warm-up (first step: imports, allocations, reference features)
    base = rss_mb()
    reset_hwm()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        obj.step()
        times.append(time.perf_counter() - t0)
    peak = hwm_mb()
    times.sort()
    return {"sec_per_step": times[len(times) // 2], "min": times[0], "peak_mb": peak, "growth_mb": peak - base}


def equivalence(config: str, steps: int) -> dict:
    """Both implementations, same start, ``steps`` steps: handle and latent differences."""
    G = build(config)
    a = make("authors", G, False)
    d = make("dragkit", G, False)
    for _ in range(steps):
        a.step()
        d.step()
    # both sets of handles were tracked at the start of the last step
    pa = torch.tensor(a.handles_xy(), dtype=torch.float64)
    a_latent = a.latent()
    pd = torch.tensor([p.handle for p in d.points], dtype=torch.float64)
    return {
        "steps": steps,
        "latent_max_abs_diff": float((a_latent - d.latent).abs().max()),
        "latent_max_abs": float(a_latent.abs().max()),
        "handles_authors": pa.tolist(),
        "handles_dragkit": pd.tolist(),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="toy,128,512", help="comma list of: " + ", ".join(CONFIGS))
    p.add_argument("--steps", type=int, default=0, help="timed steps per run (default: by config)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--mask", action="store_true", help="also time with a mask (dragkit's full-map path)")
    p.add_argument("--equiv-steps", type=int, default=8)
    p.add_argument("--child", nargs=4, metavar=("CONFIG", "IMPL", "STEPS", "MASKED"), help=argparse.SUPPRESS)
    p.add_argument("--equiv", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        c, impl, n, m = args.child
        print(json.dumps(child(c, impl, int(n), m == "1")))
        return 0
    if args.equiv:
        print(json.dumps(equivalence(args.equiv, args.equiv_steps)))
        return 0

    def sub(extra):
        out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), *extra],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(out.stderr)
        return json.loads(out.stdout.strip().splitlines()[-1])

    print(f"torch {torch.__version__}, {args.threads} thread(s), OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"CPU; median of timed steps after one warm-up step; load average {os.getloadavg()[0]:.1f}")
    header = f"{'config':8} {'mask':5} {'authors s/step':>15} {'dragkit s/step':>15} {'speed-up':>9} " \
             f"{'dragkit steps/s':>16} {'authors peak MB':>16} {'dragkit peak MB':>16}"
    rows = []
    for config in [c.strip() for c in args.configs.split(",") if c.strip()]:
        if config == "toy":
            try:
                from dragkit.models import resolve_model

                resolve_model("toy")
            except Exception:
                print("toy: not bundled yet, skipped (using rand64, its architecture, instead)")
                config = "rand64"
        n = args.steps or {"toy": 30, "rand64": 30, "128": 10, "512": 3}[config]
        for masked in ([False, True] if args.mask else [False]):
            a = sub(["--child", config, "authors", str(n), "1" if masked else "0"])
            d = sub(["--child", config, "dragkit", str(n * (3 if config == "512" else 1)), "1" if masked else "0"])
            rows.append((config, masked, a, d))
            print(header if len(rows) == 1 else "", end="\n" if len(rows) == 1 else "")
            print(f"{config:8} {'yes' if masked else 'no':5} {a['sec_per_step']:15.4f} {d['sec_per_step']:15.4f} "
                  f"{a['sec_per_step'] / d['sec_per_step']:8.1f}x {1 / d['sec_per_step']:16.1f} "
                  f"{a['growth_mb']:16.0f} {d['growth_mb']:16.0f}", flush=True)
    if args.equiv_steps > 0:
        eq_config = "toy" if any(r[0] == "toy" for r in rows) else "rand64"
        e = sub(["--equiv", eq_config, "--equiv-steps", str(args.equiv_steps)])
        print(f"\nequivalence on {eq_config} after {e['steps']} steps (L2 tracking): "
              f"max |latent diff| {e['latent_max_abs_diff']:.2e} (latent max {e['latent_max_abs']:.2f}); "
              f"handles authors {e['handles_authors']} dragkit {e['handles_dragkit']}")
    print("\npeak MB = peak RSS during the timed steps minus RSS before them (the memory one step needs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
