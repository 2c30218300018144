"""Editing a real photo in the web app: upload, inversion on the compute queue, cancel, restart.

The photo is an image of the bundled ``toy`` model itself (32 px), inverted
with a few steps so each test takes seconds; ``tests/test_invert*.py``
measure the inversion's quality, these check what the app does with it.
"""
from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from dragkit.server.app import Limits, create_app
from test_server import close_tab, open_tab, serving

pytestmark = pytest.mark.timeout(120)

FAST = "w_steps=10&wplus_steps=10"
FAST_PTI = FAST + "&pti=true&pti_steps=10"


@pytest.fixture(scope="module")
def photo() -> bytes:
    """A 32 px PNG of the toy model's seed 105 (not the tabs' seeds)."""
    from dragkit import load_model
    from dragkit.utils import tensor_to_uint8

    G = load_model("toy")
    with torch.no_grad():
        img = tensor_to_uint8(G.synthesis(G.ws_from_seed(105, psi=0.7)))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(float)


def data_url_rgb(url: str) -> np.ndarray:
    import base64

    return rgb(base64.b64decode(url.split(",", 1)[1]))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0 ** 2 / np.mean((a - b) ** 2)))


def upload(client, sid: str, data: bytes, query: str = FAST):
    return client.post(f"/api/sessions/{sid}/upload-image?{query}", content=data,
                       headers={"Content-Type": "image/png"})


def until_photo_state(tab) -> dict:
    while True:
        m = tab.recv()
        if m["type"] == "state" and m["photo"] is not None and m["inverting"] is None:
            return m


def test_upload_inverts_the_photo_and_the_tab_then_drags_it(sessions_dir, photo):
    with serving(create_app("toy", sessions_dir=sessions_dir)) as c:
        tab = open_tab(c, seed=3)
        before = tab.do(type="add_point", handle=[10, 10], target=[14, 10])
        r = upload(c, tab.sid, photo, FAST_PTI)
        assert r.status_code == 200, r.text
        res = r.json()
        st = until_photo_state(tab)
        # progress came over the websocket, per step, from every phase
        prog = [m for m in tab.seen if m["type"] == "invert_progress"]
        assert {m["phase"] for m in prog} >= {"w", "w+", "pti"}
        assert all(0 <= m["step"] <= m["steps"] for m in prog) and any(m["psnr"] for m in prog)
        # the tab's edit is now the inverted photo: a fresh picture of the same model, one undo level
        assert st["model"] == "toy" and st["points"] == [] and st["can_undo"] and (st["height"], st["width"]) == (32, 32)
        assert st["photo"]["pti"] and st["photo"]["psnr"] == pytest.approx(res["psnr"], abs=0.01)
        # before/after: the photo as the model sees it, and the reconstruction the tab now shows
        target = rgb(c.get(f"/api/sessions/{tab.sid}/photo/photo.png").content)
        recon = rgb(c.get(f"/api/sessions/{tab.sid}/photo/reconstruction.png").content)
        assert np.array_equal(target, rgb(photo))
        assert np.array_equal(data_url_rgb(st["image"]), recon)
        assert psnr(recon, target) == pytest.approx(res["psnr"], abs=0.01) and res["psnr"] > 20
        assert res["tuned"] and res["psnr"] > res["psnr_projection"]
        # it drags
        tab.do(type="add_point", handle=[12, 14], target=[16, 14])
        frames, done, after = tab.drag(8)
        assert done["steps"] >= 1 and not np.array_equal(data_url_rgb(tab.do(type="state")["image"]), recon)
        assert after["photo"] is not None  # still the photo's edit
        # undo: back to the inverted photo, then to the generated image with its point
        assert tab.do(type="undo")["points"] == [{"handle": [12.0, 14.0], "target": [16.0, 14.0]}]
        tab.do(type="undo")
        st = tab.do(type="undo")
        assert st["photo"] is None and st["seed"] == 3 and st["points"] == before["points"]
        st = tab.do(type="redo")
        assert st["photo"] is not None and st["points"] == []
        close_tab(tab)


def test_a_bad_upload_is_one_clear_error_and_keeps_the_open_edit(sessions_dir, photo):
    limits = Limits(max_photo_bytes=64 * 1024, max_invert_steps=50)
    with serving(create_app("toy", sessions_dir=sessions_dir, limits=limits)) as c:
        tab = open_tab(c, seed=3)
        before = tab.do(type="add_point", handle=[10, 10], target=[14, 10])
        cases = [
            (b"this is not an image", FAST, 400, "not a"),
            (photo[: len(photo) // 2], FAST, 400, ""),  # truncated PNG
            (b"", FAST, 400, "no photo"),
            (b"\x89PNG" + b"\0" * (64 * 1024), FAST, 413, "too large"),
            (photo, "w_steps=51", 422, "at most 50"),
            (photo, "w_steps=-1", 422, "w_steps"),
            (photo, "steps=5", 422, "unknown option"),
            (photo, "align=maybe", 422, "align"),
            (photo, "w_steps=0&wplus_steps=0", 422, "cannot both be 0"),
            (photo, FAST + "&align=true", 400, "face"),  # the toy's shapes are no face: found in the run
        ]
        for data, query, code, words in cases:
            r = upload(c, tab.sid, data, query)
            assert r.status_code == code, (query, r.text)
            msg = r.json()["error"]
            assert words in msg and "\n" not in msg and "/" not in msg.replace("w+", ""), msg
        # the open edit is exactly as it was, and the tab keeps working
        st = tab.do(type="state")
        assert st["points"] == before["points"] and st["image_rev"] == before["image_rev"] and st["photo"] is None
        err = tab.error(type="cancel_invert")
        assert err["code"] == "rejected" and "no photo" in err["message"]
        assert len(tab.do(type="add_point", handle=[3, 3], target=[5, 5])["points"]) == 2
        # a browser cannot point a tab at a photo's generator by name
        err = tab.error(type="new", model="photo:" + tab.sid + ":0123456789abcdef")
        assert err["code"] == "rejected" and "unknown model" in err["message"]
        close_tab(tab)


def test_cancel_stops_the_inversion_and_other_tabs_are_served_meanwhile(sessions_dir, photo):
    with serving(create_app("toy", sessions_dir=sessions_dir)) as c:
        tab = open_tab(c, seed=3)
        other = open_tab(c, seed=4)
        before = tab.do(type="add_point", handle=[10, 10], target=[14, 10])
        out = {}
        t = threading.Thread(target=lambda: out.update(r=upload(c, tab.sid, photo, "w_steps=1000&wplus_steps=0")))
        t.start()
        while True:  # the inversion is under way
            m = tab.recv()
            if m["type"] == "invert_progress" and m["step"] >= 2:
                break
        assert tab.do(type="state")["inverting"]["phase"] == "w"
        r = upload(c, tab.sid, photo)  # one inversion per tab at a time
        assert r.status_code == 409 and "already being inverted" in r.json()["error"]
        # another tab's click is answered between two of the inversion's steps
        t0 = time.monotonic()
        assert len(other.do(type="add_point", handle=[3, 3], target=[6, 6])["points"]) == 1
        assert time.monotonic() - t0 < 5
        tab.send(type="cancel_invert")
        t.join(60)
        r = out["r"]
        assert r.status_code == 409 and "cancelled" in r.json()["error"]
        st = tab.do(type="state")
        assert st["inverting"] is None and st["photo"] is None
        assert st["points"] == before["points"] and st["image_rev"] == before["image_rev"]
        last = [m for m in tab.seen if m["type"] == "invert_progress"][-1]
        assert last["step"] < 1000
        # a new upload works after a cancel
        assert upload(c, tab.sid, photo).status_code == 200
        close_tab(tab)
        close_tab(other)


def test_a_restarted_server_reopens_the_photo_edit(sessions_dir, photo):
    with serving(create_app("toy", sessions_dir=sessions_dir)) as c1:
        tab = open_tab(c1, seed=3)
        res = upload(c1, tab.sid, photo, FAST_PTI).json()
        st = until_photo_state(tab)
        st = tab.do(type="add_point", handle=[12, 14], target=[16, 14])
        image, sid = data_url_rgb(tab.do(type="state")["image"]), tab.sid
        recon = c1.get(f"/api/sessions/{sid}/photo/reconstruction.png").content
        close_tab(tab)
    # the photo's files were written by the library's session.save into the tab's folder
    folders = list((sessions_dir / sid / "photos").iterdir())
    assert len(folders) == 1
    names = sorted(p.name for p in folders[0].iterdir())
    assert names == ["edit.dragkit.json", "edit.generator.json", "edit.generator.safetensors", "edit.latent.npy",
                     "edit.photo.png", "edit.recon.png"]
    with serving(create_app("toy", sessions_dir=sessions_dir)) as c2:
        tab = open_tab(c2, session=sid)
        st = tab.do(type="state")
        assert tab.sid == sid and st["photo"] is not None and st["photo"]["psnr"] == pytest.approx(res["psnr"], abs=0.01)
        assert st["points"] == [{"handle": [12.0, 14.0], "target": [16.0, 14.0]}]
        assert np.array_equal(data_url_rgb(st["image"]), image)  # rendered by the edit's own tuned generator
        assert c2.get(f"/api/sessions/{sid}/photo/reconstruction.png").content == recon
        frames, done, after = tab.drag(4)
        assert done["steps"] >= 1
        tab.do(type="undo")
        tab.do(type="undo")
        st = tab.do(type="undo")
        assert st["photo"] is None and st["seed"] == 3
        close_tab(tab)
    # a replaced tuned generator is refused with one clear error, not loaded
    gen = folders[0] / "edit.generator.safetensors"
    gen.write_bytes(gen.read_bytes()[:-8] + b"\0" * 8)
    with serving(create_app("toy", sessions_dir=sessions_dir)) as c3:
        from support.webtab import Tab

        t = Tab(c3.websocket_connect("/ws").__enter__())
        t.hello(session=sid)
        st = t.do(type="state")
        assert st["photo"] is None and st["seed"] == 3 and st["can_redo"]  # the undone-to image, as left
        err = t.error(type="redo")
        assert err["code"] == "rejected" and "could not be reopened" in err["message"]
        st2 = t.do(type="state")  # nothing changed: same image, redo still there
        assert st2["image_rev"] == st["image_rev"] and st2["can_redo"] and st2["can_undo"] == st["can_undo"]
        t.ws.__exit__(None, None, None)
