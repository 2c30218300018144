"""Latency of the web app in a real browser (headless Chromium).

Starts ``dragkit serve`` on a model (default ``toy``), opens the editor in
headless Chromium, places a handle and a target (on the toy disk when the
toy oracle can find it), clicks Start and measures, in the page:

* Start click -> first new frame received, and -> first new frame drawn;
* frames drawn per second while the drag runs;
* beside it, the server's optimisation steps per second in the same drag,
  so the two rates can be compared (frames are throttled to what the page
  acknowledges, so fps <= steps/s).

Usage::

    python benchmarks/bench_app.py [--model toy] [--drags 3] [--steps 60]
    python benchmarks/bench_app.py --screenshots docs/img   # also the README pictures

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and the
``playwright`` Python package; set ``DRAGKIT_CHROMIUM`` for another binary.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def chromium() -> str:
    for c in (os.environ.get("DRAGKIT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
              shutil.which("chromium-browser")):
        if c and Path(c).is_file():
            return c
    sys.exit("bench_app: headless Chromium not found (apt-get install -y chromium, or set DRAGKIT_CHROMIUM)")


def start_server(model: str, sessions: str) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "dragkit.cli", "serve", "--model", model, "--port", "0", "--sessions-dir", sessions]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"dragkit editor: (http://\S+)", line or "")
        if m:
            url = m.group(1)
            base, _, token = url.partition("#token=")  # the token rides in the #fragment
            health = urllib.request.Request(base + "api/health", headers={"X-Dragkit-Token": token})
            for _ in range(100):
                try:
                    urllib.request.urlopen(health, timeout=2).read()
                    return proc, url
                except OSError:
                    time.sleep(0.1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    sys.exit("bench_app: `dragkit serve` did not start")


def pick_points(model: str, seed: int) -> tuple[tuple[float, float], tuple[float, float], str]:
    """Handle on the toy disk and a target R/8 px (at least 5) away where the disk
    still fits and clears the bar, if the toy oracle can read the image;
    else a fixed pair."""
    import math

    from dragkit.models import load_model
    from dragkit.utils import tensor_to_pil

    G = load_model(model)
    R = int(G.img_resolution)
    try:
        from dragkit.train.toy import measure

        m = measure(tensor_to_pil(G.synthesis(G.ws_from_seed(seed, 0.7))))
    except Exception:
        m = None
    if m is not None and m.disk is not None:
        (cx, cy), r = m.disk.center, m.disk.size
        (sx, sy), (hx, hy) = (m.bar.center, m.bar.half_extent) if m.bar else ((-1e3, -1e3), (0, 0))
        step = max(5, round(R / 8))
        for dx, dy in ((step, 0), (-step, 0), (0, step), (0, -step)):
            tx, ty = round(cx) + dx, round(cy) + dy
            inside = r + 2 <= tx <= R - 3 - r and r + 2 <= ty <= R - 3 - r
            gap = math.hypot(max(abs(tx - sx) - hx, 0), max(abs(ty - sy) - hy, 0)) - r
            if inside and gap >= 3:
                return (round(cx), round(cy)), (tx, ty), "toy disk"
    return (round(R * 0.4), round(R * 0.5)), (round(R * 0.55), round(R * 0.5)), "fixed points"


def new_image(page, seed: int) -> None:
    rev = page.evaluate("window.dragkit.state.image_rev")
    page.fill("#seed", str(seed))
    page.press("#seed", "Enter")
    page.wait_for_function(f"() => (() => {{ const s = window.dragkit.state; return s.seed === {seed} && s.image_rev > {rev}"
                           " && s.points.length === 0; })()")


def _click(page, xy) -> None:
    x, y = page.evaluate("(xy) => window.dragkit.toScreen(xy)", list(xy))
    page.mouse.click(x, y)


def take_screenshots(page, out: Path, model: str, seed: int) -> None:
    """The first visit's guide, the editor with points and a mask, mid-drag, and after: ``out/app-*.png``."""
    out.mkdir(parents=True, exist_ok=True)
    if page.is_visible("#guide"):
        page.screenshot(path=str(out / "app-first-run.png"))
        page.click("#guide-close")
    for s in range(seed, seed + 40):  # a scene with a disk to drag, if the oracle finds one
        if pick_points(model, s)[2] == "toy disk":
            seed = s
            break
    new_image(page, seed)
    R = page.evaluate("window.dragkit.state.resolution")
    handle, target, _ = pick_points(model, seed)
    # The editor: a flexible region painted around the handle and target.
    page.keyboard.press("m")
    radius = max(2, round(R * 0.09))
    page.evaluate("(r) => { const el = document.getElementById('radius'); el.value = r;"
                  " el.dispatchEvent(new Event('input')); }", radius)
    (hx, hy), (tx, ty) = handle, target
    for k in range(4):
        a = page.evaluate("(xy) => window.dragkit.toScreen(xy)", [hx + (k - 1.5) * radius, hy - 1.5 * radius])
        b = page.evaluate("(xy) => window.dragkit.toScreen(xy)", [tx + (k - 1.5) * radius, ty + 1.5 * radius])
        page.mouse.move(*a)
        page.mouse.down()
        page.mouse.move(*b, steps=8)
        page.mouse.up()
    page.wait_for_function("() => window.dragkit.state.mask !== null")
    page.keyboard.press("p")
    _click(page, handle)
    _click(page, target)
    page.wait_for_function("() => window.dragkit.state.points.length === 1")
    mx, my = page.evaluate("(xy) => window.dragkit.toScreen(xy)", [tx, ty])
    page.mouse.move(mx + 40, my + 60)
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / "app-editor.png"))
    # The drags themselves run without the mask (the whole image may change).
    page.click("#clear-mask")
    page.wait_for_function("() => window.dragkit.state.mask === null")
    page.fill("#max-steps", "300")
    page.press("#max-steps", "Enter")
    page.click("#start")
    # Mid-drag: once the tracked handle has covered a third of the way.
    d0 = math.dist(handle, target)
    page.wait_for_function(f"() => (() => {{ const l = window.dragkit.live; return !window.dragkit.running && window.dragkit.lastOutcome"
                           f" || l && l.distances && l.distances[0] <= {d0 * 0.67}; }})()", timeout=120000)
    page.screenshot(path=str(out / "app-dragging.png"))
    page.wait_for_function("() => window.dragkit.lastOutcome !== null && !window.dragkit.running", timeout=600000)
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / "app-result.png"))
    page.click("#clear-points")
    page.wait_for_function("() => window.dragkit.state.points.length === 0")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="toy")
    ap.add_argument("--drags", type=int, default=3, help="drags to time (different seeds)")
    ap.add_argument("--steps", type=int, default=60, help="step cap of each drag")
    ap.add_argument("--screenshots", metavar="DIR", help="also save screenshots of the app at work here")
    ap.add_argument("--seed", type=int, default=0, help="first seed (the screenshots use it)")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright
    import tempfile

    tmp = tempfile.mkdtemp(prefix="bench-app-")
    proc, url = start_server(args.model, os.path.join(tmp, "sessions"))
    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium(), args=[
                "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update"])
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(30000)
            page.goto(url)
            page.wait_for_function("() => window.dragkit && window.dragkit.state && window.dragkit.state.model")
            if args.screenshots:
                take_screenshots(page, Path(args.screenshots), args.model, args.seed)
            page.fill("#max-steps", str(args.steps))
            page.press("#max-steps", "Enter")
            page.wait_for_function(f"() => window.dragkit.state.max_steps === {args.steps}")
            for i in range(args.drags):
                seed = args.seed + i
                new_image(page, seed)
                handle, target, how = pick_points(args.model, seed)
                for xy in (handle, target):
                    x, y = page.evaluate("(xy) => window.dragkit.toScreen(xy)", list(xy))
                    page.mouse.click(x, y)
                page.wait_for_function("() => window.dragkit.state.points.length === 1")
                page.click("#start")
                page.wait_for_function("() => window.dragkit.lastOutcome !== null && !window.dragkit.running", timeout=600000)
                m = page.evaluate("window.dragkit.metrics")
                out = page.evaluate("window.dragkit.lastOutcome")
                if m["firstFrameAt"] is None or m["firstDrawnAt"] is None:
                    print(f"seed {seed}: no frame was drawn ({out['reason']} after {out['steps']} steps)", file=sys.stderr)
                    continue
                drawn = m["drawnTimes"]
                fps = (len(drawn) - 1) / ((drawn[-1] - drawn[0]) / 1000) if len(drawn) > 1 else float("nan")
                rows.append({
                    "seed": seed, "points": how, "reason": out["reason"], "steps": out["steps"],
                    "first_frame_ms": m["firstFrameAt"] - m["startClickAt"],
                    "first_drawn_ms": m["firstDrawnAt"] - m["startClickAt"],
                    "fps": fps, "frames": len(drawn),
                    "steps_per_s": out["steps"] / out["seconds"] if out["seconds"] else float("nan"),
                })
                page.click("#clear-points")
                page.wait_for_function("() => window.dragkit.state.points.length === 0")
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"dragkit web app latency, model {args.model!r}, headless Chromium, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'seed':>4} {'points':>12} {'end':>9} {'steps':>5} {'click->frame ms':>15} "
          f"{'click->drawn ms':>15} {'fps':>6} {'steps/s':>7} {'shown':>6}")
    for r in rows:
        print(f"{r['seed']:>4} {r['points']:>12} {r['reason']:>9} {r['steps']:>5} {r['first_frame_ms']:>15.0f} "
              f"{r['first_drawn_ms']:>15.0f} {r['fps']:>6.1f} {r['steps_per_s']:>7.1f} "
              f"{r['frames'] / max(r['steps'], 1):>6.0%}")
    med = lambda k: statistics.median(r[k] for r in rows)  # noqa: E731
    print(f"median: Start click -> first new frame {med('first_frame_ms'):.0f} ms "
          f"(drawn {med('first_drawn_ms'):.0f} ms); {med('fps'):.1f} frames/s during a drag "
          f"vs {med('steps_per_s'):.1f} optimisation steps/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
