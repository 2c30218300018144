"""The drag method and its flags in the editor (issue 19, web part), the smoothed trail of a
tracked handle and the guided example on the default face model (issue 14), in headless
Chromium.  Fixtures and helpers: tests/test_browser.py."""
from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import numpy as np
import pytest

from test_browser import (  # noqa: F401  (fixtures)
    MODEL, browser, click_at, find_toy_scene, new_image, open_session_file, page, server, shown_image, start_server,
    stop_server, toasts, wait_drag_end, wait_state,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

DRAGGAN_ONLY = ("#opt-r1", "#opt-r2", "#opt-tracking", "#opt-confidence", "#opt-subpixel", "#opt-supervise")
FREEDRAG_ONLY = ("#opt-freedrag-loss", "#opt-freedrag-step")
EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "dragkit" / "server" / "static" / "examples.json"


def wait_toast(pg, words: str) -> None:
    pg.wait_for_function("(m) => [...document.querySelectorAll('#toasts .toast')].some((t) => t.textContent.includes(m))",
                         arg=words)


def shown(pg, sel: str) -> bool:
    return pg.is_visible(sel)


def pick_method(pg, method: str) -> dict:
    pg.select_option("#opt-method", method)
    return wait_state(pg, f"s.options.method === '{method}'")


def test_the_method_controls_come_from_the_servers_limits_and_follow_the_method(page):
    st = page.evaluate("window.dragkit.state")
    lim = st["option_limits"]
    assert page.eval_on_selector_all("#opt-method option", "os => os.map((o) => o.value)") == lim["method"]["choices"]
    for sel, name in (("#opt-confidence", "confidence"), ("#opt-freedrag-loss", "freedrag_loss"),
                      ("#opt-freedrag-step", "freedrag_step"), ("#opt-r1", "r1")):
        assert float(page.get_attribute(sel, "min")) == lim[name]["min"], name
        assert float(page.get_attribute(sel, "max")) == lim[name]["max"], name  # e.g. half the image
    assert page.get_attribute("#opt-subpixel", "type") == "checkbox" == page.get_attribute("#opt-supervise", "type")
    assert page.input_value("#opt-method") == st["options"]["method"] == "draggan"
    assert all(shown(page, s) for s in DRAGGAN_ONLY) and not any(shown(page, s) for s in FREEDRAG_ONLY)
    st = pick_method(page, "freedrag")
    assert not any(shown(page, s) for s in DRAGGAN_ONLY) and all(shown(page, s) for s in FREEDRAG_ONLY)
    # the auto value of the sub-motion, as the engine resolves it for this model
    assert page.get_attribute("#opt-freedrag-step", "placeholder") == f"auto ({st['options_resolved']['freedrag_step']:g})"
    assert page.input_value("#opt-freedrag-loss") == f"{st['options']['freedrag_loss']:g}"
    # a checkbox and a number field reach the server
    pick_method(page, "draggan")
    page.check("#opt-subpixel")
    wait_state(page, "s.options.subpixel === true")
    page.fill("#opt-confidence", "0.8")
    page.press("#opt-confidence", "Enter")
    st = wait_state(page, "s.options.confidence === 0.8")
    assert st["options"]["supervise_original"] is False
    page.uncheck("#opt-subpixel")
    page.fill("#opt-confidence", "")
    page.press("#opt-confidence", "Enter")
    wait_state(page, "s.options.subpixel === false && s.options.confidence === null")
    # the speed options (issue 18): a select of the engine's precisions and the compile checkbox, for both methods
    assert page.eval_on_selector_all("#opt-precision option", "os => os.map((o) => o.value)") == lim["precision"]["choices"]
    assert page.input_value("#opt-precision") == st["options"]["precision"] and shown(page, "#opt-compile")
    page.select_option("#opt-precision", "bf16")
    page.check("#opt-compile")
    wait_state(page, "s.options.precision === 'bf16' && s.options.compile === true")
    pick_method(page, "freedrag")
    assert shown(page, "#opt-precision") and shown(page, "#opt-compile")
    page.select_option("#opt-precision", "fp32")
    page.uncheck("#opt-compile")
    wait_state(page, "s.options.precision === 'fp32' && s.options.compile === false")


def test_a_freedrag_drag_runs_from_the_page_and_arrives(page, tmp_path):
    seed, (cx, cy), target, R = find_toy_scene(MODEL)
    new_image(page, seed)
    st = pick_method(page, "freedrag")
    handle = (round(cx), round(cy))
    click_at(page, handle)
    click_at(page, target)
    wait_state(page, "s.points.length === 1")
    before = shown_image(page)
    page.click("#start")
    outcome, st = wait_drag_end(page)
    assert outcome["reason"] == "reached", outcome
    assert math.dist(st["points"][0]["handle"], target) <= st["stop_distance"] + 1e-6
    assert not np.array_equal(shown_image(page), before)
    # the server dragged with FreeDrag: its handles come from a line search on the handle-target
    # segment (never off the line, never past the target), which DragGAN's tracker does not keep to
    trail = page.evaluate("window.dragkit.trails[0]")
    assert len(trail) >= 3
    ux, uy = (target[0] - handle[0]) / math.dist(handle, target), (target[1] - handle[1]) / math.dist(handle, target)
    for x, y in trail:
        off = (x - handle[0]) * -uy + (y - handle[1]) * ux
        along = (x - handle[0]) * ux + (y - handle[1]) * uy
        assert abs(off) < 1e-6 and along <= math.dist(handle, target) + 1e-6, (x, y)
    assert st["options"]["method"] == "freedrag"
    with page.expect_download() as dl:
        page.click("#dl-session")
    path = tmp_path / "freedrag.dragkit.json"
    dl.value.save_as(path)
    assert json.loads(path.read_text())["options"]["method"] == "freedrag"


def test_bad_method_and_flag_values_are_refused_and_put_back(page):
    st = new_image(page, 4)
    rev = st["image_rev"]
    before = dict(st["options"])
    cases = [("#opt-confidence", "5", "option confidence must be between 0 and 1"),
             ("#opt-confidence", "", None),  # empty: off (allowed)
             ("#opt-layers", "", "Layers: type a number")]
    for sel, value, message in cases:
        old = page.input_value(sel)
        page.fill(sel, value)
        page.press(sel, "Enter")
        if message:
            wait_toast(page, message)
            page.wait_for_function("([s, v]) => document.querySelector(s).value === v", arg=[sel, old])
    pick_method(page, "freedrag")
    page.fill("#opt-freedrag-loss", "0")  # below the engine's 1e-4
    page.press("#opt-freedrag-loss", "Enter")
    wait_toast(page, "option freedrag_loss must be between")
    page.wait_for_function("() => document.getElementById('opt-freedrag-loss').value === '0.3'")
    pick_method(page, "draggan")
    # a method the server does not know (as a tampered page would send it): refused, the select put back
    page.evaluate("""() => { const s = document.getElementById('opt-method'); const o = document.createElement('option');
        o.value = 'bogus'; o.textContent = 'bogus'; s.appendChild(o); s.value = 'bogus';
        s.dispatchEvent(new Event('change')); }""")
    wait_toast(page, "option method must be one of draggan, freedrag")
    page.wait_for_function("() => document.getElementById('opt-method').value === 'draggan'")
    assert all(shown(page, s) for s in DRAGGAN_ONLY) and not any(shown(page, s) for s in FREEDRAG_ONLY)
    st = page.evaluate("window.dragkit.state")
    assert st["options"] == before and st["image_rev"] == rev
    # the next state frame rebuilds the select from the server's choices: the stray one is gone
    page.check("#opt-subpixel")
    wait_state(page, "s.options.subpixel === true")
    page.wait_for_function("() => [...document.querySelectorAll('#opt-method option')].map((o) => o.value).join() === 'draggan,freedrag'")
    page.uncheck("#opt-subpixel")
    wait_state(page, "s.options.subpixel === false")


def test_an_opened_session_file_restores_the_method_and_flags(page, toy, tmp_path):
    from dragkit import DragSession
    from dragkit.drag.options import DragOptions

    s = DragSession(toy, seed=5, options=DragOptions(method="freedrag", freedrag_loss=0.5, freedrag_step=3.0))
    s.add_point((10, 10), (14, 10))
    path = s.save(tmp_path / "free.dragkit.json")
    new_image(page, 7)
    open_session_file(page, path, "s.seed === 5 && s.options.method === 'freedrag'")
    page.wait_for_function("() => document.getElementById('opt-method').value === 'freedrag'")
    assert page.input_value("#opt-freedrag-loss") == "0.5" and page.input_value("#opt-freedrag-step") == "3"
    assert all(shown(page, x) for x in FREEDRAG_ONLY) and not any(shown(page, x) for x in DRAGGAN_ONLY)

    s = DragSession(toy, seed=6, options=DragOptions(subpixel=True, confidence=0.9, supervise_original=True))
    path = s.save(tmp_path / "flags.dragkit.json")
    open_session_file(page, path, "s.seed === 6 && s.options.method === 'draggan'")
    page.wait_for_function("() => document.getElementById('opt-subpixel').checked && document.getElementById('opt-supervise').checked")
    assert page.input_value("#opt-confidence") == "0.9" and page.input_value("#opt-method") == "draggan"
    assert all(shown(page, x) for x in DRAGGAN_ONLY) and not any(shown(page, x) for x in FREEDRAG_ONLY)

    # a session file with a psi the app refuses (issue 14): one message, the open edit unchanged
    rev = page.evaluate("window.dragkit.state.image_rev")
    doc = json.loads(path.read_text())
    doc["psi"] = 50
    bad = tmp_path / "psi50.dragkit.json"
    bad.write_text(json.dumps(doc))
    page.set_input_files("#open-file", str(bad))
    wait_toast(page, "psi: must be a number between -1 and 2 (got 50)")
    st = page.evaluate("window.dragkit.state")
    assert st["seed"] == 6 and st["image_rev"] == rev and page.input_value("#seed") == "6"
    assert len([t for t in toasts(page) if "psi" in t]) == 1


def reversals(path: list[list[float]]) -> int:
    """Turns back along x or along y: sign changes of the steps per axis (zero steps skipped)."""
    n = 0
    for axis in (0, 1):
        last = 0
        for a, b in zip(path, path[1:]):
            d = b[axis] - a[axis]
            if d == 0:
                continue
            s = 1 if d > 0 else -1
            n += last != 0 and s != last
            last = s
    return n


def test_the_trail_is_drawn_smoothed_and_the_handle_stays_where_it_was_tracked(page):
    # the smoothing itself, on a tracker-like zig-zag: 1 px sideways and back while moving right
    zig = [[x, 10 + (x % 2)] for x in range(12)] + [[11, 10], [12, 10]]
    out = page.evaluate("(p) => window.dragkit.smoothTrail(p)", zig)
    assert out[0] == zig[0] and out[-1] == zig[-1]
    assert reversals(zig) >= 10 and reversals(out) <= 2, (reversals(zig), out)
    assert max(abs(y - 10.5) for _, y in out[2:-2]) < 0.2  # the wiggle averaged out, no detour added
    # a real detour (several frames away and back) is kept, only rounded
    det = [[x, 10] for x in range(5)] + [[5, 11], [6, 12], [7, 13], [8, 13], [9, 12], [10, 11]] + [[x, 10] for x in range(11, 16)]
    out = page.evaluate("(p) => window.dragkit.smoothTrail(p)", det)
    assert max(y for _, y in out) > 12

    # a DragGAN drag on the toy model: the drawn path is the smoothed tracked one, from the start to the end
    seed, (cx, cy), target, R = find_toy_scene(MODEL)
    new_image(page, seed)
    handle = (round(cx), round(cy))
    click_at(page, handle)
    click_at(page, target)
    wait_state(page, "s.points.length === 1")
    page.click("#start")
    outcome, _ = wait_drag_end(page)
    page.wait_for_function("() => window.dragkit.drawn.trails.length === 1")
    raw = page.evaluate("window.dragkit.trails[0]")
    drawn = page.evaluate("window.dragkit.drawn.trails[0]")
    assert drawn == page.evaluate("(p) => window.dragkit.smoothTrail(p)", raw)
    assert drawn[0] == list(map(float, handle)) and drawn[-1] == outcome["points"][0]
    assert reversals(drawn) <= reversals(raw)
    # the handle's dot and the points list show the tracked position, not a smoothed one
    assert page.evaluate("window.dragkit.drawn.handles[0]") == outcome["points"][0]


def test_show_me_on_the_default_face_model_plays_its_example_and_it_arrives(browser, tmp_path):
    from dragkit.models import default_model_name

    model = default_model_name()
    ex = json.loads(EXAMPLES.read_text())["examples"][model]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc, url = start_server(tmp_path / "sessions", port, model=model)
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        pg = ctx.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(url)
        pg.wait_for_function("() => window.dragkit && window.dragkit.state && window.dragkit.state.model")
        assert pg.evaluate("window.dragkit.state.model") == model
        pg.wait_for_selector("#guide-example", state="visible")
        assert ex["what"] in pg.get_attribute("#guide-example", "title")
        pg.click("#guide-example")
        outcome, st = wait_drag_end(pg)
        assert outcome["reason"] == "reached", outcome
        assert st["seed"] == ex["seed"]
        for i, p in enumerate(ex["pairs"]):
            assert math.dist(st["points"][i]["handle"], p["target"]) <= st["stop_distance"] + 1e-6
        assert pg.inner_text("#run-state") == "reached"
        assert not errors, errors
    finally:
        ctx.close()
        stop_server(proc)
