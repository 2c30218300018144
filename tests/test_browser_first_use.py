"""What a new user meets in the editor (issue 14), in headless Chromium: no stale status, inputs
that are refused are put back, the interrupted drag is named, Start is disabled without a server,
a handle outside the mask is caught before a drag, one toast per message, the guided first run,
downloads at a useful size.  Fixtures and helpers: tests/test_browser.py."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from test_browser import (  # noqa: F401  (fixtures)
    MODEL, READY, browser, click_at, drag_mouse, free_port, new_image, open_session_file, page, server, shown_image,
    start_server, stop_server, toasts, wait_state,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


def pill(pg) -> str:
    return pg.inner_text("#run-state")


def short_drag(pg, steps: int = 3) -> None:
    pg.fill("#max-steps", str(steps))
    pg.press("#max-steps", "Enter")
    rev = wait_state(pg, f"s.max_steps === {steps}")["image_rev"]
    pg.click("#start")
    pg.wait_for_function("() => window.dragkit.lastOutcome && !window.dragkit.running")
    wait_state(pg, f"!s.running && s.image_rev !== {rev}")  # the state after the drag


def test_the_status_bar_forgets_a_drag_once_the_edit_changes(page):
    st = new_image(page, 2)
    R = st["resolution"]
    click_at(page, (R * 0.3, R * 0.5))
    click_at(page, (R * 0.8, R * 0.5))
    wait_state(page, "s.points.length === 1")
    for change in ("undo", "seed", "psi", "move"):
        short_drag(page)
        page.wait_for_function("() => document.getElementById('run-state').textContent === 'step cap'")
        assert "3 steps" in page.inner_text("#step-info")
        if change == "undo":
            rev = page.evaluate("window.dragkit.state.image_rev")
            page.keyboard.press("Control+z")
            wait_state(page, f"s.image_rev !== {rev}")
        elif change == "seed":
            new_image(page, 5)
            click_at(page, (R * 0.3, R * 0.5))
            click_at(page, (R * 0.8, R * 0.5))
            wait_state(page, "s.points.length === 1")
        elif change == "psi":
            page.fill("#psi", "0.5")
            page.press("#psi", "Enter")
            wait_state(page, "s.psi === 0.5")
            click_at(page, (R * 0.3, R * 0.5))
            click_at(page, (R * 0.8, R * 0.5))
            wait_state(page, "s.points.length === 1")
        else:
            page.click("#points li")
            page.keyboard.press("ArrowUp")  # nudges the selected pair's target
            wait_state(page, f"s.points[0].target[1] < {R * 0.5}")
        page.wait_for_function("() => document.getElementById('run-state').textContent === 'idle'")
        assert page.inner_text("#step-info") == "step 0"
        d = page.evaluate("window.dragkit.state.distances")
        assert page.inner_text("#dist-info") == "distance " + " · ".join(f"{x:.1f}" for x in d) + " px"


def test_opening_a_session_file_sets_the_seed_field_and_confirms(page, toy, tmp_path):
    from dragkit import DragSession

    s = DragSession(toy, seed=5)
    s.add_point((10, 10), (14, 10))
    path = s.save(tmp_path / "mine.dragkit.json")
    new_image(page, 7)
    open_session_file(page, path, "s.seed === 5 && s.points.length === 1")
    page.wait_for_function("() => document.getElementById('seed').value === '5'")
    page.wait_for_function("() => [...document.querySelectorAll('#toasts .toast')].some((t) => t.textContent.startsWith('Opened mine.dragkit.json'))")
    # a file that is not a session: one message, and no path of the server's in it
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"hello": "world"}))
    page.set_input_files("#open-file", str(bad))
    page.wait_for_function("() => [...document.querySelectorAll('#toasts .toast')].some((t) => t.textContent.includes('not a dragkit session'))")
    for t in toasts(page):
        assert "/tmp" not in t and "/" not in t.replace("·", ""), t
    assert page.evaluate("window.dragkit.state.seed") == 5


def test_a_reload_during_a_drag_says_the_drag_was_interrupted(page):
    st = new_image(page, 3)
    R = st["resolution"]
    click_at(page, (2, 2))
    click_at(page, (R - 3, R - 3))
    wait_state(page, "s.points.length === 1")
    page.fill("#max-steps", "2000")
    page.press("#max-steps", "Enter")
    wait_state(page, "s.max_steps === 2000")
    page.click("#start")
    page.wait_for_function("() => window.dragkit.live && window.dragkit.live.step >= 2")
    page.reload()
    page.wait_for_function("() => window.dragkit && window.dragkit.connected && window.dragkit.state && window.dragkit.state.model")
    # the status bar says so until the edit changes; the message is up for 6 s
    page.wait_for_function("() => document.getElementById('run-state').textContent === 'interrupted'")
    assert "interrupted at step" in page.inner_text("#step-info")
    page.wait_for_function("() => [...document.querySelectorAll('#toasts .toast')].some((t) => t.textContent.includes('interrupted'))")
    assert not page.evaluate("window.dragkit.running")


def test_start_is_disabled_as_soon_as_the_server_is_gone(browser, tmp_path):
    port = free_port()
    proc, url = start_server(tmp_path / "sessions", port)
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        pg = ctx.new_page()
        pg.goto(url)
        pg.wait_for_function(READY)
        R = pg.evaluate("window.dragkit.state.resolution")
        click_at(pg, (R * 0.4, R * 0.4))
        click_at(pg, (R * 0.6, R * 0.4))
        wait_state(pg, "s.points.length === 1")
        assert not pg.is_disabled("#start")
        stop_server(proc)
        pg.wait_for_function("() => !window.dragkit.connected", timeout=10000)
        # at once, before any click
        pg.wait_for_function("() => document.getElementById('start').disabled", timeout=1000)
    finally:
        ctx.close()
        stop_server(proc)


def test_bad_inputs_are_refused_and_the_fields_put_back(page):
    st = new_image(page, 4)
    rev = st["image_rev"]
    cases = [("#psi", "", "ψ: type a number"), ("#seed", "", "Seed: type a number"),
             ("#seed", "-1", "seed"), ("#psi", "5", "psi"), ("#opt-lr", "", "lr: type a number")]
    for sel, value, message in cases:
        before = page.input_value(sel)
        page.fill(sel, value)
        page.press(sel, "Enter")
        if sel == "#opt-lr":
            page.locator(sel).blur()
        page.wait_for_function(f"(m) => [...document.querySelectorAll('#toasts .toast')].some((t) => t.textContent.includes(m))", arg=message)
        page.wait_for_function(f"([s, v]) => document.querySelector(s).value === v", arg=[sel, before])
        assert page.evaluate("window.dragkit.state.image_rev") == rev  # no new image was made
    assert not any("got None" in t for t in toasts(page))
    st = page.evaluate("window.dragkit.state")
    assert st["seed"] == 4 and st["psi"] == 0.7


def test_one_toast_per_message(page):
    page.evaluate("() => { for (let i = 0; i < 4; i++) document.getElementById('redo').disabled = false; }")
    for _ in range(4):
        page.evaluate("() => { document.getElementById('redo').disabled = false; document.getElementById('redo').click(); }")
    page.wait_for_function("() => [...document.querySelectorAll('#toasts .toast')].some((t) => t.textContent.includes('(×4)'))")
    assert len([t for t in toasts(page) if "nothing to redo" in t]) == 1


def test_a_handle_outside_the_mask_is_caught_before_the_drag(page):
    st = new_image(page, 1)
    R = st["resolution"]
    page.click("#tool-brush")
    drag_mouse(page, (R * 0.2, R * 0.8), (R * 0.8, R * 0.8), steps=5)
    wait_state(page, "s.mask !== null")
    page.click("#tool-points")
    click_at(page, (R * 0.4, R * 0.2))  # far above the painted band
    click_at(page, (R * 0.6, R * 0.2))
    st = wait_state(page, "s.points.length === 1")
    assert st["handles_outside_mask"] == [0]
    assert page.locator("#points li .warn").count() == 1
    page.click("#start")
    page.wait_for_selector("#mask-warn[open]")
    assert "outside" in page.inner_text("#mask-warn-text")
    page.click("#mask-warn-extend")
    wait_state(page, "s.handles_outside_mask.length === 0")
    page.wait_for_function("() => window.dragkit.lastOutcome !== null || window.dragkit.running")


def test_guided_first_run_and_its_example(browser, server):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        pg = ctx.new_page()
        pg.goto(server)
        pg.wait_for_function(READY)
        assert pg.is_visible("#guide")
        if MODEL == "toy":
            before = shown_image(pg)
            pg.click("#guide-example")
            pg.wait_for_function("() => window.dragkit.lastOutcome !== null && !window.dragkit.running", timeout=60000)
            # the state after the drag: the disk's handle moved right
            st = wait_state(pg, "!s.running && s.seed === 1 && s.points.length === 1 && s.points[0].handle[0] > 12")
            assert st["can_undo"]
            assert not np.array_equal(shown_image(pg), before)
        pg.click("#guide-close")
        assert not pg.is_visible("#guide")
        pg.reload()
        pg.wait_for_function(READY)
        assert not pg.is_visible("#guide")  # dismissed for good
    finally:
        ctx.close()


def test_downloads_at_a_useful_size_and_the_stop_distance_placeholder(page, tmp_path):
    st = new_image(page, 2)
    R = st["resolution"]
    click_at(page, (R * 0.3, R * 0.5))
    click_at(page, (R * 0.6, R * 0.5))
    wait_state(page, "s.points.length === 1")
    assert page.get_attribute("#opt-stop", "placeholder") == f"auto ({page.evaluate('window.dragkit.state.stop_distance'):g})"
    k = max(1, -(-256 // R))
    assert page.input_value("#dl-scale") == str(min(16, k))
    with page.expect_download() as dl:
        page.click("#dl-png")
    assert dl.value.suggested_filename == f"{MODEL}-2-edit.png"
    path = tmp_path / "big.png"
    dl.value.save_as(path)
    big = np.asarray(Image.open(path).convert("RGB")).astype(int)
    small = shown_image(page)
    assert big.shape[0] == R * k and np.array_equal(big, small.repeat(k, 0).repeat(k, 1))
    with page.expect_download() as dl:
        page.keyboard.press("Control+s")
    assert dl.value.suggested_filename == f"{MODEL}-2.dragkit.json"


def test_many_pairs_keep_the_status_bar_on_one_line_and_shift_drag_moves_a_pair(page):
    st = new_image(page, 6)
    R = st["resolution"]
    one_line = page.evaluate("document.querySelector('.statusbar').getBoundingClientRect().height")
    for i in range(6):
        click_at(page, (3 + 4 * i, 4))
        click_at(page, (3 + 4 * i, 8))
    wait_state(page, "s.points.length === 6")
    text = page.inner_text("#dist-info")
    assert text.startswith("6 pairs · distance max 4.0") and "distance 4.0 ·" in page.get_attribute("#dist-info", "title")
    assert page.evaluate("document.querySelector('.statusbar').getBoundingClientRect().height") == one_line
    # Shift+drag on a handle moves its whole pair
    page.keyboard.down("Shift")
    drag_mouse(page, (3, 4), (3, 14), steps=5)
    page.keyboard.up("Shift")
    st = wait_state(page, "Math.abs(s.points[0].handle[1] - 14) < 0.6")
    assert abs(st["points"][0]["target"][1] - 18) < 0.6 and abs(st["points"][0]["target"][0] - 3) < 0.6
