"""Your own photo in a real browser: upload, progress, before/after, then drag it (bundled ``toy``).

Needs Debian's Chromium (see ``tests/test_browser.py``, whose fixtures this
module uses: a ``dragkit serve --model toy`` subprocess and a page on it).
"""
from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from test_browser import browser, page, server, wait_state  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def photo_file(tmp_path_factory):
    from dragkit import load_model
    from dragkit.utils import tensor_to_uint8

    G = load_model("toy")
    with torch.no_grad():
        img = tensor_to_uint8(G.synthesis(G.ws_from_seed(105, psi=0.7)))
    path = tmp_path_factory.mktemp("photo") / "my photo.png"
    Image.fromarray(img).save(path)
    return path


DROP = """async ([bytes, name]) => {
  const dt = new DataTransfer();
  dt.items.add(new File([new Uint8Array(bytes)], name, { type: "image/png" }));
  const wrap = document.querySelector('.stage-wrap');
  wrap.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
  wrap.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
}"""


def test_upload_a_photo_see_before_and_after_then_drag_it(page, photo_file):  # noqa: F811
    st0 = wait_state(page, "s.model !== null")
    # A bad file dropped on the image: one clear error, the edit unchanged.
    page.evaluate(DROP, [list(b"not an image at all"), "bad.png"])
    page.wait_for_function("() => window.dragkit.photo.lastError !== null && !window.dragkit.photo.uploading")
    assert "image" in page.evaluate("window.dragkit.photo.lastError")
    assert page.locator(".toast").count() >= 1
    st = page.evaluate("window.dragkit.state")
    assert st["image_rev"] == st0["image_rev"] and st["photo"] is None
    assert page.is_hidden("#photo-card")

    # The real photo through the file picker, without PTI (default projection steps: seconds on toy).
    page.uncheck("#photo-pti")
    page.set_input_files("#upload-photo", str(photo_file))
    page.wait_for_function("() => window.dragkit.photo.uploading")
    page.wait_for_function("() => { const p = window.dragkit.photo.progress; return p && p.steps > 0; }")
    assert page.is_visible("#invert-progress")
    st = wait_state(page, "s.photo !== null", timeout=120000)
    page.wait_for_function("() => !window.dragkit.photo.uploading")
    res = page.evaluate("window.dragkit.photo.lastResult")
    assert res and not res["tuned"] and st["photo"]["psnr"] == pytest.approx(res["psnr"], abs=0.01)
    assert page.is_hidden("#invert-progress") and page.is_visible("#photo-card")
    # before/after: both images loaded at the model's size; the PSNR is shown
    page.wait_for_function("() => ['photo-before', 'photo-after'].every((id) => {"
                           " const i = document.getElementById(id); return i.complete && i.naturalWidth === 32; })")
    assert f"{res['psnr']:.2f} dB" in page.inner_text("#photo-psnr")
    assert st["can_undo"] and st["points"] == []

    # Drag the photo.
    for xy in ([12, 14], [16, 14]):
        x, y = page.evaluate("(xy) => window.dragkit.toScreen(xy)", xy)
        page.mouse.click(x, y)
    wait_state(page, "s.points.length === 1")
    page.fill("#max-steps", "5")
    page.press("#max-steps", "Tab")
    wait_state(page, "s.max_steps === 5")
    page.click("#start")
    page.wait_for_function("() => window.dragkit.lastOutcome !== null", timeout=60000)
    assert page.evaluate("window.dragkit.lastOutcome")["steps"] >= 1
    st = wait_state(page, "!s.running && s.photo !== null")
    # Undo three times: before the drag, before the point, before the upload (the photo view goes).
    page.wait_for_function("() => !document.getElementById('undo').disabled")  # the page drew the state
    page.keyboard.press("Control+z")
    wait_state(page, "s.points.length === 1 && s.points[0].handle[0] === 12 && s.photo !== null")
    page.wait_for_function("() => !document.getElementById('undo').disabled")  # the page drew the state
    page.keyboard.press("Control+z")
    wait_state(page, "s.points.length === 0 && s.photo !== null")
    page.wait_for_function("() => !document.getElementById('undo').disabled")  # the page drew the state
    page.keyboard.press("Control+z")
    wait_state(page, "s.photo === null")
    page.wait_for_function("() => document.getElementById('photo-card').classList.contains('hidden')")
