"""The drag editor in a real browser: headless Chromium driven by Playwright.

Runs `dragkit serve` as a subprocess on the bundled ``toy`` model and uses
Debian's ``chromium`` (Playwright's own browser download is not used).
Set-up on a fresh machine::

    apt-get install -y chromium          # /usr/bin/chromium
    pip install playwright               # the Python package only

``DRAGKIT_CHROMIUM`` may point at another Chromium binary.  A missing
browser or model is a failure with instructions, never a skip.
"""
from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

MODEL = os.environ.get("DRAGKIT_BROWSER_MODEL", "toy")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--mute-audio",
]


def chromium_path() -> str:
    candidates = [os.environ.get("DRAGKIT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                  shutil.which("chromium-browser"), shutil.which("google-chrome")]
    for c in candidates:
        if c and Path(c).is_file():
            return c
    pytest.fail(
        "headless Chromium not found: install it with `apt-get install -y chromium` "
        "(or set DRAGKIT_CHROMIUM to a Chromium binary); browser tests do not skip",
        pytrace=False,
    )


def find_toy_scene(model: str) -> tuple[int, tuple[float, float], tuple[int, int], int]:
    """A seed whose image the toy oracle reads cleanly, and a target for its disk.

    Returns ``(seed, disk centre, target, resolution)``; the target is
    R/8 px (at least 5 px) away, where the moved disk would still lie inside the image and
    clear of the bar.
    """
    from dragkit.models import load_model
    from dragkit.train.toy import measure
    from dragkit.utils import tensor_to_pil

    G = load_model(model)
    R = int(G.img_resolution)
    step = max(5, round(R / 8))
    import torch

    def scenes():
        # Clean scenes first; then any with a plausible disk (the bar, if
        # not recognised, is then avoided only as far as the oracle saw it).
        later = []
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # much faster on a busy machine
        try:
            for seed in range(60):
                with torch.no_grad():
                    m = measure(tensor_to_pil(G.synthesis(G.ws_from_seed(seed, 0.7))))
                if m.ok:
                    yield seed, m
                elif m.disk is not None:
                    later.append((seed, m))
        finally:
            torch.set_num_threads(threads)
        yield from later

    for seed, m in scenes():
        (cx, cy), r = m.disk.center, m.disk.size
        others = [o for o in m.objects if o is not m.disk] or ([m.bar] if m.bar else [])
        for dx, dy in ((step, 0), (-step, 0), (0, step), (0, -step)):
            tx, ty = round(cx) + dx, round(cy) + dy
            inside = r + 2 <= tx <= R - 3 - r and r + 2 <= ty <= R - 3 - r
            clear = all(math.hypot(tx - o.center[0], ty - o.center[1]) - math.hypot(*o.half_extent) - r >= 3
                        for o in others)
            if inside and clear:
                return seed, (cx, cy), (tx, ty), R
    pytest.fail(f"no clean toy scene with room to drag the disk in 60 seeds of {model!r}", pytrace=False)


def start_server(sessions: Path, port: int = 0, model: str = MODEL,
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """``dragkit serve --model model`` in a subprocess (``env`` added to the environment);
    returns (process, URL) once it answers."""
    import urllib.request

    cmd = [sys.executable, "-m", "dragkit.cli", "serve", "--model", model, "--port", str(port),
           "--sessions-dir", str(sessions)]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    url = None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line)
        m = re.search(r"dragkit editor: (http://\S+)", line)
        if m:
            url = m.group(1)
            break
    if url is None:
        proc.kill()
        pytest.fail("`dragkit serve` did not start:\n" + "".join(lines), pytrace=False)
    # The token is in the URL's #fragment (never sent in a URL); scripts send it as a header.
    base, _, token = url.partition("#token=")
    assert token, f"`dragkit serve` printed no token: {url}"
    health = urllib.request.Request(base + "api/health", headers={"X-Dragkit-Token": token})
    for _ in range(100):
        try:
            urllib.request.urlopen(health, timeout=2).read()
            break
        except OSError:
            time.sleep(0.1)
    return proc, url


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from dragkit.models import list_models

    names = [m.name for m in list_models()]
    if MODEL not in names:
        pytest.fail(f"model {MODEL!r} is not available (have: {', '.join(names) or 'none'}); "
                    "the browser tests need the bundled toy model", pytrace=False)
    proc, url = start_server(tmp_path_factory.mktemp("browser-home") / "sessions")
    yield url
    stop_server(proc)


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright Python package is missing: pip install playwright", pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, timeout=60000)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    pg = ctx.new_page()
    pg.set_default_timeout(20000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(server)
    pg.wait_for_function("() => window.dragkit && window.dragkit.connected && window.dragkit.state && window.dragkit.state.model")
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


#: The page has connected once and shows a model.
READY = "() => window.dragkit && window.dragkit.state && window.dragkit.state.model"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a server to be stopped and restarted)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def click_at(pg, xy) -> None:
    x, y = pg.evaluate("(xy) => window.dragkit.toScreen(xy)", list(xy))
    pg.mouse.click(x, y)


def drag_mouse(pg, a, b, steps: int) -> tuple[list[float], list[float]]:
    """Press the mouse at image point ``a`` ([x, y] px), move to ``b`` in ``steps`` moves, release;
    returns both points in screen pixels."""
    sa = pg.evaluate("(xy) => window.dragkit.toScreen(xy)", list(a))
    sb = pg.evaluate("(xy) => window.dragkit.toScreen(xy)", list(b))
    pg.mouse.move(*sa)
    pg.mouse.down()
    pg.mouse.move(*sb, steps=steps)
    pg.mouse.up()
    return sa, sb


def wait_state(pg, predicate: str, timeout: float = 20000) -> dict:
    pg.wait_for_function(f"() => (() => {{ const s = window.dragkit.state; return s && ({predicate}); }})()", timeout=timeout)
    return pg.evaluate("window.dragkit.state")


def wait_drag_end(pg, timeout: float = 150000) -> tuple[dict, dict]:
    """Wait for the running drag to end; returns its outcome and the state that carries its final handles."""
    pg.wait_for_function("() => window.dragkit.lastOutcome !== null && !window.dragkit.running", timeout=timeout)
    outcome = pg.evaluate("window.dragkit.lastOutcome")
    pg.wait_for_function("""(want) => { const s = window.dragkit.state;
        return s && !s.running && s.points.length === want.length
          && s.points.every((p, i) => p.handle[0] === want[i][0] && p.handle[1] === want[i][1]); }""",
                         arg=outcome["points"])
    return outcome, pg.evaluate("window.dragkit.state")


def toasts(pg) -> list[str]:
    return pg.evaluate("[...document.querySelectorAll('#toasts .toast')].map((t) => t.textContent)")


def open_session_file(pg, path, predicate: str) -> dict:
    """Open a session file with the page's Open control; returns the state once ``predicate`` holds."""
    pg.set_input_files("#open-file", str(path))
    return wait_state(pg, predicate)


def shown_image(pg) -> np.ndarray:
    src = pg.get_attribute("#image", "src")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")).astype(int)


def overlay_pixel(pg, xy) -> list[int]:
    return pg.evaluate(
        """(xy) => { const c = document.getElementById('overlay');
            const r = c.getBoundingClientRect(); const [sx, sy] = window.dragkit.toScreen(xy);
            const k = c.width / r.width;
            return Array.from(c.getContext('2d').getImageData(Math.round((sx - r.left) * k), Math.round((sy - r.top) * k), 1, 1).data); }""",
        list(xy),
    )


def new_image(pg, seed: int) -> dict:
    rev = pg.evaluate("window.dragkit.state.image_rev")
    pg.fill("#seed", str(seed))
    pg.press("#seed", "Enter")
    return wait_state(pg, f"s.seed === {seed} && s.image_rev > {rev} && s.points.length === 0")


# ---------------------------------------------------------------------------


def test_drag_moves_the_handle_and_the_image(page):
    from dragkit.train.toy import measure

    seed, (cx, cy), target, R = find_toy_scene(MODEL)
    st = new_image(page, seed)
    assert st["model"] == MODEL and st["resolution"] == R
    # Crisp upscaling: the image is shown several times larger, unblurred.
    assert page.evaluate("getComputedStyle(document.getElementById('image')).imageRendering") in ("pixelated", "crisp-edges")
    assert page.evaluate("document.getElementById('image').getBoundingClientRect().width") >= 4 * R

    handle = (round(cx), round(cy))
    want = (target[0] - handle[0], target[1] - handle[1])
    click_at(page, handle)
    assert page.evaluate("window.dragkit.pending") == list(map(float, handle))
    click_at(page, target)
    st = wait_state(page, "s.points.length === 1")
    assert st["points"][0] == {"handle": list(map(float, handle)), "target": list(map(float, target))}
    page.wait_for_function("() => window.dragkit.drawn.handles.length === 1")
    assert overlay_pixel(page, handle)[:3] == [239, 68, 68], "handle not drawn red where placed"
    assert overlay_pixel(page, target)[:3] == [59, 130, 246], "target not drawn blue where placed"
    before = shown_image(page)

    page.fill("#max-steps", "200")
    page.press("#max-steps", "Tab")
    wait_state(page, "s.max_steps === 200")
    page.click("#start")
    page.wait_for_function("() => window.dragkit.metrics.frames > 0", timeout=30000)
    page.wait_for_function("() => window.dragkit.lastOutcome !== null", timeout=150000)
    outcome = page.evaluate("window.dragkit.lastOutcome")
    # The state message that follows "done" carries the handle tracked on the
    # final image; an earlier (pre-drag) state also has running == false.
    oh = outcome["points"][0]
    st = wait_state(page, f"!s.running && s.points.length === 1 && s.points[0].handle[0] === {oh[0]} && s.points[0].handle[1] === {oh[1]}")
    assert outcome["reason"] == "reached", f"the handle did not arrive: {outcome}"

    # The drawn handle moved to the target, and is drawn red there.
    drawn = page.evaluate("window.dragkit.drawn.handles[0]")
    assert math.dist(drawn, st["points"][0]["handle"]) < 1e-6
    assert math.dist(drawn, target) <= 2.5 and math.dist(drawn, handle) >= math.hypot(*want) - 2.5
    assert overlay_pixel(page, drawn)[:3] == [239, 68, 68]
    # The image changed, and the disk itself moved toward the target (toy oracle).
    after = shown_image(page)
    assert np.abs(after - before).max() > 30
    m0 = measure(Image.fromarray(before.astype(np.uint8)))
    m = measure(Image.fromarray(after.astype(np.uint8)))
    # The dragged object afterwards: the disk, or (if the oracle now doubts its
    # shape) the measured object closest in colour to the disk before.
    obj = m.disk or min(m.objects, key=lambda o: math.dist(o.color, m0.disk.color), default=None)
    assert obj is not None, m.problems
    moved = (obj.center[0] - cx, obj.center[1] - cy)
    along = (moved[0] * want[0] + moved[1] * want[1]) / math.hypot(*want)
    assert along >= math.hypot(*want) / 3, f"disk moved by {moved}, wanted about {want}"
    assert page.inner_text("#run-state") == "reached"


def test_paint_mask_then_undo_and_redo(page):
    st0 = new_image(page, 1)
    R = st0["resolution"]
    page.keyboard.press("m")
    assert "active" in page.get_attribute("#tool-brush", "class")
    a, b = drag_mouse(page, (R * 0.25, R * 0.5), (R * 0.75, R * 0.5), steps=10)
    st = wait_state(page, "s.mask !== null")
    painted = page.evaluate("window.dragkit.maskCount")
    assert painted > R  # a stroke across half the image, several pixels wide
    # The painted region is shown tinted on the overlay.
    assert overlay_pixel(page, (R * 0.5, R * 0.5))[3] > 0
    # Erase part of it.
    page.keyboard.press("e")
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move((a[0] + b[0]) / 2, a[1], steps=5)
    page.mouse.up()
    page.wait_for_function(f"() => window.dragkit.maskCount < {painted} && window.dragkit.state.can_undo")
    # Hide / show.
    page.keyboard.press("h")
    assert overlay_pixel(page, (R * 0.6, R * 0.5))[3] == 0
    page.keyboard.press("h")
    # Points mode, place a pair, then undo it, the erase and the paint.
    page.keyboard.press("p")
    click_at(page, (R * 0.3, R * 0.3))
    click_at(page, (R * 0.4, R * 0.3))
    wait_state(page, "s.points.length === 1")
    page.keyboard.press("Control+z")
    wait_state(page, "s.points.length === 0")
    page.keyboard.press("Control+z")
    page.wait_for_function(f"() => window.dragkit.maskCount === {painted}")
    page.click("#undo")
    st = wait_state(page, "s.mask === null")
    assert page.evaluate("window.dragkit.maskCount") == 0 and st["seed"] == 1
    # Redo all three.
    for n in range(3):
        page.keyboard.press("Control+Shift+z")
        wait_state(page, f"s.can_undo && {'s.mask !== null' if n < 2 else 's.points.length === 1'}")
    assert page.is_disabled("#redo")


def test_download_png_and_session_then_reopen(page, browser, server, tmp_path):
    st = new_image(page, 2)
    R = st["resolution"]
    click_at(page, (R * 0.3, R * 0.6))
    click_at(page, (R * 0.5, R * 0.5))
    st = wait_state(page, "s.points.length === 1")

    page.select_option("#dl-scale", "1")
    with page.expect_download() as dl:
        page.click("#dl-png")
    assert dl.value.suggested_filename == f"{MODEL}-2-edit.png"
    png_path = tmp_path / "image.png"
    dl.value.save_as(png_path)
    png = Image.open(png_path)
    assert png.size == (R, R) and png.format == "PNG"
    assert np.array_equal(np.asarray(png.convert("RGB")).astype(int), shown_image(page))

    with page.expect_download() as dl:
        page.keyboard.press("Control+s")
    session_path = tmp_path / "edit.dragkit.json"
    dl.value.save_as(session_path)
    doc = json.loads(session_path.read_text())
    assert doc["format"] == "dragkit-session" and len(doc["points"]) == 1

    # A new tab (its own session), seeded differently, opens the file.
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    other = ctx.new_page()
    other.set_default_timeout(20000)
    other.goto(server)
    other.wait_for_function(READY)
    new_image(other, 7)
    assert other.evaluate("window.dragkit.sid") != page.evaluate("window.dragkit.sid")
    other.set_input_files("#open-file", str(session_path))
    st2 = wait_state(other, "s.points.length === 1")
    assert st2["points"] == st["points"]
    assert np.array_equal(shown_image(other), shown_image(page))
    # The first tab was not touched by the second.
    assert page.evaluate("window.dragkit.state.points") == st["points"]
    ctx.close()


def test_move_and_remove_points_then_reload_keeps_the_edit(page):
    st = new_image(page, 3)
    R = st["resolution"]
    click_at(page, (R * 0.2, R * 0.2))
    click_at(page, (R * 0.3, R * 0.25))
    click_at(page, (R * 0.7, R * 0.7))
    click_at(page, (R * 0.8, R * 0.8))
    wait_state(page, "s.points.length === 2")
    # Drag the first target somewhere else.
    drag_mouse(page, (R * 0.3, R * 0.25), (R * 0.5, R * 0.25), steps=6)
    st = wait_state(page, f"Math.abs(s.points[0].target[0] - {R * 0.5}) < 0.6")
    assert st["points"][0]["handle"] == [R * 0.2, R * 0.2] and len(st["points"]) == 2
    # Right-click removes a pair.
    x, y = page.evaluate("(xy) => window.dragkit.toScreen(xy)", [R * 0.7, R * 0.7])
    page.mouse.click(x, y, button="right")
    st = wait_state(page, "s.points.length === 1")
    sid = page.evaluate("window.dragkit.sid")
    page.reload()
    page.wait_for_function("() => window.dragkit && window.dragkit.state && window.dragkit.state.points.length === 1")
    assert page.evaluate("window.dragkit.sid") == sid
    assert page.evaluate("window.dragkit.state.points") == st["points"]


def test_arrived_display_follows_the_engines_stop_rule(page):
    """A pair shows "ok" exactly when the engine says it has arrived, at the engine's stop distance
    (the paper's 1 px for a few points, or the option), not at a distance the page picks."""
    st = new_image(page, 2)
    R = st["resolution"]
    y = round(R * 0.3)
    pairs = [((10, y), (12, y)), ((20, y + 10), (23, y + 10))]  # 2 px and 3 px from their targets
    for handle, target in pairs:
        click_at(page, handle)
        click_at(page, target)
    wait_state(page, f"s.points.length === {len(pairs)}")

    def shown() -> list[tuple[bool, str, str]]:
        return page.evaluate("""() => [...document.querySelectorAll('#points li .d')].map(
            (d) => [d.classList.contains('ok'), d.textContent, d.title])""")

    def set_stop(value: str, want: float | None) -> dict:
        page.fill("#opt-stop", value)
        page.press("#opt-stop", "Enter")
        return wait_state(page, f"s.stop_distance === {want if want is not None else 's.stop_distance'}"
                                f" && s.options.stop_distance === {want if value else 'null'}")

    for value, stop, arrived in [("", 1.0, [False, False]), ("2.5", 2.5, [True, False]),
                                 ("3.5", 3.5, [True, True]), ("", 1.0, [False, False])]:
        st = set_stop(value, stop if value else None)
        assert st["stop_distance"] == stop and st["arrived"] == arrived, st
        assert [round(d, 6) for d in st["distances"]] == [2.0, 3.0]
        page.wait_for_function(f"() => [...document.querySelectorAll('#points li .d')].map("
                               f"(d) => d.classList.contains('ok')).join() === '{','.join(str(a).lower() for a in arrived)}'")
        for (ok, text, title), a, d in zip(shown(), arrived, st["distances"]):
            assert ok == a and text == f"{d:.1f} px" and title == f"stops within {stop:g} px"


def test_restarted_server_reopens_the_edit_in_the_open_tab(browser, server, tmp_path):
    port = free_port()
    proc, url = start_server(tmp_path / "sessions", port)
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        pg = ctx.new_page()
        pg.set_default_timeout(20000)
        pg.goto(url)
        pg.wait_for_function(READY)
        st = new_image(pg, 4)
        R = st["resolution"]
        click_at(pg, (R * 0.4, R * 0.4))
        click_at(pg, (R * 0.5, R * 0.45))
        st = wait_state(pg, "s.points.length === 1")
        sid = pg.evaluate("window.dragkit.sid")
        stop_server(proc)
        pg.wait_for_function("() => !window.dragkit.connected")
        assert "connect" in pg.inner_text("#conn")
        proc, _ = start_server(tmp_path / "sessions", port)
        # The page reconnects by itself and gets its edit back.
        pg.wait_for_function("() => window.dragkit.connected", timeout=30000)
        st2 = wait_state(pg, "s.points.length === 1")
        assert pg.evaluate("window.dragkit.sid") == sid
        assert st2["points"] == st["points"] and st2["seed"] == 4 and st2["can_undo"]
    finally:
        ctx.close()
        stop_server(proc)
