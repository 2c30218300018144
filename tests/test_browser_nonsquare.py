"""The editor on a non-square (StyleGAN-Human, H x H/2) model in a real browser.

A tiny random 32 x 16 (H x W) StyleGAN2 in StyleGAN-Human's layout is saved
with dragkit's own code into the test's model home and served by
``dragkit serve``; the page must size its canvas per axis, place a click at
the right ``[x, y]`` pixel of the tall image, paint an H x W mask, and drag
a handle down the image to its target.  Needs Debian's Chromium (see
``tests/test_browser.py``).
"""
from __future__ import annotations

import base64
import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from test_browser import (
    CHROMIUM_ARGS, chromium_path, click_at, drag_mouse, start_server, stop_server, wait_drag_end, wait_state,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

NAME = "human32x16"


def human() -> torch.nn.Module:
    """The generator of tests/test_drag_models.py's ``human``: 32 x 16, reaches its targets there."""
    from dragkit.nets import Generator

    torch.manual_seed(0)
    return Generator(32, 0, 32, 32, 3, mapping_kwargs=dict(num_layers=2),
                     synthesis_kwargs=dict(channel_base=512, channel_max=32, square=False)).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from dragkit.formats import save_native

    home = tmp_path_factory.mktemp("nonsquare-home")
    save_native(human(), home / NAME)
    proc, url = start_server(home / "sessions", model=NAME, env={"DRAGKIT_HOME": str(home)})
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        stop_server(proc)
        pytest.fail("the playwright Python package is missing: pip install playwright", pytrace=False)
    errors: list[str] = []
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, timeout=60000)
            ctx = b.new_context(viewport={"width": 1280, "height": 860})
            pg = ctx.new_page()
            pg.set_default_timeout(20000)
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.goto(url)
            pg.wait_for_function("() => window.dragkit && window.dragkit.connected && window.dragkit.state"
                                 " && window.dragkit.state.model")
            yield pg
            b.close()
    finally:
        stop_server(proc)
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_stage_click_mask_and_drag_are_per_axis(page):
    st = wait_state(page, "s.model !== null")
    assert (st["height"], st["width"]) == (32, 16)
    # The model list says H x W.
    assert "32×16" in page.inner_text("#model")
    # The stage has the image's aspect ratio (tall), at a whole multiple of its size.
    box = page.evaluate("(() => { const r = document.getElementById('overlay').getBoundingClientRect();"
                        " return [r.width, r.height]; })()")
    k = box[0] / 16
    assert k >= 4 and k == int(k) and box[1] == pytest.approx(32 * k)

    # A click at a screen position lands on the [x, y] pixel under it: one near the bottom-left
    # corner of the tall image (y beyond the width: a square assumption would clamp or scale it).
    r = page.evaluate("(() => { const r = document.getElementById('overlay').getBoundingClientRect();"
                      " return [r.left, r.top]; })()")
    page.mouse.click(r[0] + (3 + 0.5) * k, r[1] + (27 + 0.5) * k)
    assert page.evaluate("window.dragkit.pending") == [3.0, 27.0]
    page.keyboard.press("Escape")

    # A mask stroke down the left column is an H x W mask at the right pixels.
    page.keyboard.press("m")
    page.keyboard.press("[")
    page.keyboard.press("[")
    page.keyboard.press("[")  # radius 3
    drag_mouse(page, (4, 4), (4, 28), steps=12)
    st = wait_state(page, "s.mask !== null")
    m = np.asarray(Image.open(io.BytesIO(base64.b64decode(st["mask"].split(",", 1)[1]))).convert("L")) > 127
    assert m.shape == (32, 16)
    assert m[4:29, 4].all() and not m[:, 10:].any() and m.sum() > 25 * 3
    page.click("#clear-mask")
    wait_state(page, "s.mask === null")
    page.keyboard.press("p")

    # A drag down the tall image reaches its target (the handle, tracked on the 32 x 16 image).
    rev = page.evaluate("window.dragkit.state.image_rev")
    page.fill("#seed", "1")
    page.press("#seed", "Enter")
    wait_state(page, f"s.seed === 1 && s.image_rev > {rev}")
    page.fill("#opt-lr", "0.02")
    page.press("#opt-lr", "Enter")
    wait_state(page, "s.options.lr === 0.02")
    handle, target = (8, 12), (8, 20)
    click_at(page, handle)
    click_at(page, target)
    st = wait_state(page, "s.points.length === 1")
    assert st["points"][0] == {"handle": [8.0, 12.0], "target": [8.0, 20.0]}
    page.fill("#max-steps", "120")
    page.press("#max-steps", "Tab")
    wait_state(page, "s.max_steps === 120")
    page.click("#start")
    outcome, st = wait_drag_end(page, timeout=120000)
    assert outcome["reason"] == "reached", outcome
    assert math.dist(st["points"][0]["handle"], target) <= 1.0
    assert math.dist(page.evaluate("window.dragkit.drawn.handles[0]"), st["points"][0]["handle"]) < 1e-6
    # The shown image is the model's H x W.
    src = page.get_attribute("#image", "src")
    assert Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).size == (16, 32)
