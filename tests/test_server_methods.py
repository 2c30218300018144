"""The drag method and its flags over the websocket (issue 19, web part), the guided first run's
example edits (each arrives on its model), and the session file's psi rule (issue 14).

The protocol tests use conftest's tiny random generator; the example edits run on the bundled
models they are for (``toy``, ``faces128``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dragkit.drag.options import PSI_RANGE, option_limits
from dragkit.server.app import create_app
from test_server import close_tab, open_tab, serving

pytestmark = pytest.mark.timeout(180)

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "dragkit" / "server" / "static" / "examples.json"
FLAGS = ("method", "subpixel", "confidence", "supervise_original", "freedrag_loss", "freedrag_step")


@pytest.fixture
def client(model_home, sessions_dir):
    with serving(create_app("tiny", sessions_dir=sessions_dir)) as c:
        yield c


def test_state_lists_the_method_and_its_flags_with_the_engines_limits(client):
    tab = open_tab(client, seed=3)
    lim = tab.state["option_limits"]
    assert lim["method"] == {"kind": "choice", "optional": False, "choices": ["draggan", "freedrag"]}
    for name in ("subpixel", "supervise_original"):
        assert lim[name]["kind"] == "bool"
    assert lim["confidence"] == {"kind": "float", "optional": True, "min": 0.0, "max": 1.0}
    assert lim["freedrag_loss"]["kind"] == "float" and not lim["freedrag_loss"]["optional"]
    # freedrag_step at most half the image, as the engine says for this model
    assert lim["freedrag_step"]["max"] == tab.state["width"] / 2
    assert tab.state["options"]["method"] == "draggan"
    assert tab.state["options_resolved"]["freedrag_step"] > 0  # the "auto (n)" the page shows
    close_tab(tab)


def test_method_and_flags_are_set_checked_and_drag_with_freedrag(client):
    tab = open_tab(client, seed=3)
    st = tab.do(type="options", options={"method": "freedrag", "freedrag_loss": 0.5, "freedrag_step": 4})
    assert (st["options"]["method"], st["options"]["freedrag_loss"], st["options"]["freedrag_step"]) == ("freedrag", 0.5, 4.0)
    # refused values: one error each, naming the option; nothing changes
    for bad, words in (({"method": "bogus"}, "option method must be one of draggan, freedrag"),
                       ({"confidence": 5}, "option confidence must be between 0 and 1"),
                       ({"subpixel": "yes"}, "option subpixel must be true or false"),
                       ({"freedrag_step": 1000}, "option freedrag_step must be at most")):
        err = tab.error(type="options", options=bad)
        assert words in err["message"], err
    st = tab.do(type="state")
    assert st["options"]["method"] == "freedrag" and st["options"]["confidence"] is None and not st["options"]["subpixel"]
    tab.do(type="add_point", handle=[8, 8], target=[14, 8])
    frames, done, final = tab.drag(max_steps=6)
    assert done["steps"] >= 1
    # FreeDrag's handles are found by a line search on the handle-target segment: never off it
    for f in frames:
        x, y = f["points"][0]
        assert abs(y - 8) < 1e-6 and 8 - 4 - 1e-6 <= x <= 14 + 1e-6, f["points"]
    # the session file holds the method (what the page downloads and reopens)
    doc = json.loads(client.get(f"/api/sessions/{tab.sid}/session.dragkit.json").content)
    assert doc["options"]["method"] == "freedrag" and doc["options"]["freedrag_loss"] == 0.5
    close_tab(tab)


def test_opening_a_session_file_takes_its_method_and_flags(client):
    src = open_tab(client, seed=4)
    src.do(type="options", options={"method": "draggan", "subpixel": True, "confidence": 0.8, "supervise_original": True})
    data = client.get(f"/api/sessions/{src.sid}/session.dragkit.json").text
    tab = open_tab(client, seed=9)
    tab.do(type="options", options={"method": "freedrag", "lr": 0.01})
    st = tab.do(type="open", data=data)
    got = {k: st["options"][k] for k in ("method", "subpixel", "confidence", "supervise_original", "lr")}
    assert got == {"method": "draggan", "subpixel": True, "confidence": 0.8, "supervise_original": True, "lr": 0.004}
    # options are settings, not history: undoing the open keeps them
    st = tab.do(type="undo")
    assert st["seed"] == 9 and st["options"]["subpixel"] is True
    close_tab(src)
    close_tab(tab)


def _session_file(client, seed: int) -> dict:
    tab = open_tab(client, seed=seed)
    tab.do(type="add_point", handle=[5, 5], target=[9, 5])
    doc = json.loads(client.get(f"/api/sessions/{tab.sid}/session.dragkit.json").content)
    close_tab(tab)
    return doc


@pytest.mark.parametrize("psi", [50, -1.5, 2.01, 100])
def test_a_session_file_with_psi_outside_the_apps_range_is_refused_and_nothing_is_lost(client, psi):
    doc = _session_file(client, 6)
    doc["psi"] = psi
    tab = open_tab(client, seed=2)
    before = tab.do(type="add_point", handle=[3, 3], target=[7, 7])
    err = tab.error(type="open", data=json.dumps(doc))
    lo, hi = PSI_RANGE
    assert err["message"] == f"malformed session state: psi: must be a number between {lo:g} and {hi:g} (got {psi})", err
    st = tab.do(type="state")
    for k in ("seed", "psi", "points", "image_rev", "can_undo"):
        assert st[k] == before[k], k
    close_tab(tab)


def test_session_file_psi_rule_is_check_psi_in_the_library_too(toy, tmp_path):
    from dragkit import DragSession
    from dragkit.errors import DragkitError

    s = DragSession(toy, seed=3, psi=0.5)
    s.add_point((10, 10), (14, 10))
    good = s.get_state()
    for edge in PSI_RANGE:  # the range's ends are allowed, as check_psi allows them
        t = DragSession(toy, seed=1)
        t.set_state({**good, "psi": edge})
        assert t.psi == edge
    t = DragSession(toy, seed=1)
    t.add_point((4, 4), (6, 6))
    keep = (t.seed, t.psi, [(p.handle, p.target) for p in t.points], t.latent.clone())
    path = tmp_path / "bad.dragkit.json"
    path.write_text(json.dumps({**good, "psi": 50}))
    for attempt in (lambda: t.set_state({**good, "psi": 50}), lambda: DragSession.load(toy, path),
                    lambda: t.set_state({**good, "psi": "0.7"}), lambda: t.set_state({**good, "psi": True})):
        with pytest.raises(DragkitError) as exc:
            attempt()
        assert "\n" not in str(exc.value) and "psi: must be a number between -1 and 2" in str(exc.value)
    assert (t.seed, t.psi, [(p.handle, p.target) for p in t.points]) == keep[:3]
    assert bool((t.latent == keep[3]).all())


def _examples() -> dict:
    return json.loads(EXAMPLES.read_text())["examples"]


def test_every_model_with_an_example_is_one_the_app_offers():
    from dragkit.models import default_model_name, list_models

    names = {m.name: m for m in list_models()}
    ex = _examples()
    assert default_model_name() in ex, "the default model has no guided example"
    for model, e in ex.items():
        assert model in names, model
        assert e["size"][0] == names[model].resolution and 1 <= len(e["pairs"]) <= 4 and isinstance(e["what"], str)
        H, W = e["size"]
        for p in e["pairs"]:
            for x, y in (p["handle"], p["target"]):
                assert 0 <= x <= W - 1 and 0 <= y <= H - 1, p


@pytest.mark.parametrize("model", sorted(_examples()))
def test_the_guided_example_edit_arrives_on_its_model(model_home, sessions_dir, model):
    """What "Show me" sends (static/examples.json): new image, its pairs, Start - every handle arrives."""
    ex = _examples()[model]
    with serving(create_app(model, sessions_dir=sessions_dir)) as c:
        tab = open_tab(c)
        st = tab.do(type="new", model=model, seed=ex["seed"], psi=ex["psi"])
        assert [st["height"], st["width"]] == ex["size"]
        for p in ex["pairs"]:
            st = tab.do(type="add_point", handle=p["handle"], target=p["target"])
        assert st["handles_outside_mask"] == []
        start = [p["handle"] for p in ex["pairs"]]
        frames, done, final = tab.drag(max_steps=st["max_steps"])
        assert done["reason"] == "reached", done
        for i, p in enumerate(ex["pairs"]):
            h = final["points"][i]["handle"]
            assert math.dist(h, p["target"]) <= final["stop_distance"] + 1e-6
            assert math.dist(h, start[i]) >= math.dist(start[i], p["target"]) - final["stop_distance"] - 1e-6
        assert final["image_rev"] > st["image_rev"]
        close_tab(tab)
