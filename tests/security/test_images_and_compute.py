"""Findings 5 and 6: decompression bombs and unbounded drags.

Issue 17 measured a 657 KB 13000 x 13000 PNG raising the server's memory by
664 MB and stalling another tab's ping for 2.5 s; and ``r1 = 64`` with 32
points making one toy step take 21 s and 3.9 GB.  Images are now checked
from their header before decoding (``dragkit.images``) and decoded off the
event loop; every drag passes ``DragOptions.validate(G, num_points)``.
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from PIL import ImageFile

from dragkit.cli import main as dragkit_main
from dragkit.drag.options import MAX_STEP_SAMPLES, DragOptions, step_samples
from dragkit.drag.session import DragSession
from dragkit.errors import ImageError, SpecError
from dragkit.images import read_image, read_mask
from sec_hostile import png_bomb, png_bytes, tiny_generator
from sec_web import RES, b64, tabs

pytestmark = [pytest.mark.security, pytest.mark.timeout(180)]


@pytest.fixture
def decoded(monkeypatch):
    """Sizes of every image Pillow decodes while the test runs."""
    sizes: list[tuple[int, int]] = []
    real = ImageFile.ImageFile.load

    def load(self):
        sizes.append(self.size)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return sizes


def test_bomb_is_refused_from_its_header_before_decoding(decoded, tmp_path):
    bomb = png_bomb(13000)
    assert len(bomb) < 700_000  # 169 MB of pixels in a few hundred KB
    with pytest.raises(ImageError, match="must be 32x32 pixels, got 13000x13000"):
        read_mask(bomb, 32)
    with pytest.raises(ImageError, match="13000x13000 pixels; at most"):
        read_image(bomb)
    (tmp_path / "m.png").write_bytes(bomb)
    with pytest.raises(ImageError, match="13000x13000"):
        read_mask(tmp_path / "m.png", 32)
    assert decoded == []  # not one pixel decoded
    with pytest.raises(ImageError, match="too large"):
        read_image(b"\x89PNG" + b"\0" * 100, max_bytes=50)
    assert read_mask(png_bytes(np.eye(32, dtype=bool)), 32).sum() == 32 and set(decoded) == {(32, 32)}


def test_spec_mask_bomb_is_one_clear_cli_error(model_home, tmp_path, capsys, decoded):
    (tmp_path / "mask.png").write_bytes(png_bomb(13000))
    spec = {"model": "tiny", "points": [{"handle": [10, 10], "target": [14, 10]}], "mask": "mask.png"}
    (tmp_path / "edit.json").write_text(json.dumps(spec))
    rc = dragkit_main(["drag", "--spec", str(tmp_path / "edit.json"), "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "13000x13000" in err[0] and decoded == []
    assert not (tmp_path / "o.png").exists()


def _pinger(tab, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        out.append(tab.ping_seconds())
        time.sleep(0.02)


def test_bomb_mask_in_the_app_is_refused_and_other_tabs_stay_responsive(client, decoded):
    bomb = b64(png_bomb(13000))
    with tabs(client) as open_tab:
        a, b = open_tab(), open_tab()
        pings: list[float] = []
        stop = threading.Event()
        t = threading.Thread(target=_pinger, args=(b, stop, pings))
        t.start()
        try:
            for _ in range(3):
                err = a.error(type="set_mask", mask=bomb)
                assert err["code"] == "rejected" and "13000x13000" in err["message"]
        finally:
            stop.set()
            t.join()
        assert pings and max(pings) < 1.0, pings  # was 2.5 s
        assert a.do(type="set_mask", mask=b64(png_bytes(np.ones((RES, RES), bool)))) is not None
    assert (13000, 13000) not in decoded


def test_drag_bounds_are_one_rule_for_every_path(model_home, tmp_path, capsys):
    G = tiny_generator()  # 16 px
    # radii by the image
    with pytest.raises(SpecError, match="r1 must be at most 8 px"):
        DragOptions(r1=64).validate(G)
    with pytest.raises(SpecError, match="r2 must be at most 8 px"):
        DragOptions(r2=128).validate(G)
    # points: the library, session files, specs
    s = DragSession(G, seed=0)
    for i in range(68):
        s.add_point((1, 1), (2 + i % 10, 2))
    with pytest.raises(SpecError, match="at most 68 point pairs"):
        s.add_point((1, 1), (3, 3))
    spec = {"model": "tiny", "points": [{"handle": [10, 10], "target": [14, 10]}] * 69}
    (tmp_path / "a.json").write_text(json.dumps(spec))
    spec = {"model": "tiny", "points": [{"handle": [10, 10], "target": [14, 10]}], "options": {"r1": 64}}
    (tmp_path / "b.json").write_text(json.dumps(spec))
    for name, needle in (("a.json", "at most 68 point pairs"), ("b.json", "r1 must be at most 16 px")):
        rc = dragkit_main(["drag", "--spec", str(tmp_path / name), "--out", str(tmp_path / "o.png")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and len(err) == 1 and needle in err[0], err


class _Big:
    """The shape of a 1024 px StyleGAN2 (what validate reads; nothing allocated)."""

    img_resolution, num_ws = 1024, 18

    class synthesis:
        block_resolutions = [2**i for i in range(2, 11)]

        @staticmethod
        def block_channels(res: int) -> int:
            return min(32768 // res, 512)


def test_work_per_step_is_bounded_with_a_clear_message():
    ok = DragOptions().resolved(_Big())  # the defaults at 1024 px
    assert step_samples(ok.r1, ok.r2, 32, 128) < MAX_STEP_SAMPLES / 2
    DragOptions().validate(_Big(), num_points=64)  # the most points, default radii: allowed
    with pytest.raises(SpecError) as info:
        DragOptions(r1=300, r2=200).validate(_Big(), num_points=32)
    msg = str(info.value)
    assert "too large" in msg and "32 point pairs" in msg and "fewer points or smaller radii" in msg, msg
    from dragkit.drag.core import disk_offsets

    for r1 in (0.5, 3.0, 7.5, 16.0):  # the estimate counts the engine's own disk
        assert step_samples(r1, 12, 1, 1) == 5 * disk_offsets(r1).shape[0] + 25 ** 2


def test_oversized_drags_are_refused_and_other_tabs_stay_responsive(client):
    with tabs(client) as open_tab:
        a, b = open_tab(), open_tab()
        assert "r1 must be at most 16" in a.error(type="options", options={"r1": 64})["message"]
        own = json.loads(client.get(f"/api/sessions/{a.sid}/session.dragkit.json").text)
        many = dict(own, points=[{"handle": [4.0, 4.0], "target": [20.0, 20.0]}] * 300)
        err = a.error(type="open", data=json.dumps(many))
        assert "at most 68" in err["message"]
        wide = dict(own, options={**own["options"], "r1": 64.0})
        assert "r1 must be at most 16" in a.error(type="open", data=json.dumps(wide))["message"]
        over = dict(own, points=[{"handle": [4.0, 4.0], "target": [20.0, 20.0]}] * 40)  # engine ok, server 32
        assert "at most 32" in a.error(type="open", data=json.dumps(over))["message"]
        # The largest drag allowed here (32 points, r1 = r2 = H/2) runs; B's pings wait at most one step.
        for i in range(32):
            a.do(type="add_point", handle=[4 + i % 8, 4 + i // 8], target=[27, 27])
        a.do(type="options", options={"r1": 16, "r2": 16})
        pings: list[float] = []
        stop = threading.Event()
        t = threading.Thread(target=_pinger, args=(b, stop, pings))
        t.start()
        try:
            t0 = time.perf_counter()
            a.send(type="start", max_steps=4)
            while a.recv()["type"] != "done":
                pass
            seconds = time.perf_counter() - t0
        finally:
            stop.set()
            t.join()
        assert seconds < 20, seconds  # was 21 s for ONE step at r1 = 64
        assert pings and max(pings) < 2.0, pings
