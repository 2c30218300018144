"""What a new user meets first (issue 14): the README's Python example, the library's speed
settings, one clear error for every bad seed/psi/scale/option, outputs at a useful size,
``DragSession.load``'s argument order, ``run()``'s results, a handle the mask holds still."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dragkit import DragSession
from dragkit.cli import main as cli_main
from dragkit.drag.options import MAX_SEED, check_psi, check_seed
from dragkit.drag.spec import parse_spec
from dragkit.errors import DragkitError, SpecError
from dragkit.train.toy import measure

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def readme_python_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Python API"):]
    m = re.search(r"```python\n(.*?)```", section, re.S)
    assert m, "README.md has no python block under '## Python API'"
    return m.group(1)


def test_readme_python_example_runs_as_written_and_moves_the_disk(tmp_path, toy):
    code = readme_python_example()
    assert 'load_model("toy")' in code  # the test's speed depends on it
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout.strip().splitlines()
    assert out and out[0].startswith("0 ")  # step 0: the start, each step number once
    steps = [int(line.split()[0]) for line in out]
    assert steps == list(range(len(steps)))
    before = measure(DragSession(toy, seed=1, psi=0.7).image())
    after = measure(Image.open(tmp_path / "edited.png"))
    assert before.ok and after.ok
    # the disk went (most of) the 8 px to the right; the bar below, outside the mask, stayed put
    assert after.disk.center[0] - before.disk.center[0] > 5
    assert math.dist(after.bar.center, before.bar.center) < 0.5
    s = DragSession.load(toy, tmp_path / "edit.dragkit.json")
    assert np.array_equal(np.asarray(s.image()), np.asarray(Image.open(tmp_path / "edited.png")))


THREADS_CHILD = """
import os, sys
{pre}
import dragkit, torch
from dragkit.threads import default_threads
n0 = torch.get_num_threads()
G = dragkit.load_model("toy")
s = dragkit.DragSession(G, seed=1)
print(os.environ.get("OMP_WAIT_POLICY"), n0, torch.get_num_threads(), default_threads(len(os.sched_getaffinity(0))))
"""


def _threads_child(pre: str, **env: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", THREADS_CHILD.format(pre=pre)], env=_env(**env),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_the_library_tunes_threads_like_the_cli_without_overriding_the_user():
    # dragkit imported first (the README): OpenMP threads sleep instead of spinning; the count is torch's
    policy, n0, n, _ = _threads_child("")
    assert policy == "PASSIVE" and n == n0
    # the user's own policy is kept
    assert _threads_child("", OMP_WAIT_POLICY="ACTIVE")[0] == "ACTIVE"
    # torch first, no policy: the pool is lowered to half the cores (the CLI's `serve` rule) ...
    policy, n0, n, want = _threads_child("import torch")
    assert policy == "None" and int(n) == min(int(n0), int(want))
    # ... unless the user chose a count
    assert _threads_child("import torch; torch.set_num_threads(7)")[2] == "7"
    _, n0, n, _ = _threads_child("import torch", OMP_NUM_THREADS=str(os.cpu_count() or 1))
    assert n == n0


@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1, 1.5, "7", None, True, float("nan")])
def test_a_bad_seed_is_one_clear_error_everywhere(toy, seed):
    with pytest.raises(SpecError, match=r"seed must be a whole number between 0 and 4294967295"):
        DragSession(toy, seed=seed)
    with pytest.raises(SpecError, match=r"seed must be a whole number between 0 and 4294967295"):
        parse_spec({"seed": seed, "points": [{"handle": [1, 1], "target": [2, 2]}]}, ".")
    assert check_seed(7.0) == 7 and check_seed(MAX_SEED) == MAX_SEED
    from dragkit.server.protocol import ProtocolError, validate

    if seed is None:
        return  # the web app's `new` without a seed keeps the tab's
    with pytest.raises(ProtocolError, match=r"^seed must be a whole number between 0 and 4294967295"):
        validate({"type": "new", "seed": seed})


@pytest.mark.parametrize("psi", [9, -3, float("nan"), float("inf"), "0.5", None])
def test_a_bad_psi_is_one_clear_error_with_the_app_s_range(toy, psi):
    with pytest.raises(SpecError, match=r"psi must be a number between -1 and 2"):
        DragSession(toy, seed=0, psi=psi)
    with pytest.raises(SpecError, match=r"psi must be a number between -1 and 2"):
        parse_spec({"psi": psi, "points": [{"handle": [1, 1], "target": [2, 2]}]}, ".")
    from dragkit.server.protocol import PSI_RANGE, ProtocolError, validate

    assert PSI_RANGE == (-1.0, 2.0) and check_psi(2) == 2.0
    if psi is not None and not (isinstance(psi, float) and not math.isfinite(psi)):  # JSON has no NaN
        with pytest.raises(ProtocolError, match=r"^psi must be a number between -1 and 2"):
            validate({"type": "new", "psi": psi})


def test_load_takes_the_generator_first_like_the_constructor(toy, tmp_path):
    s = DragSession(toy, seed=2)
    s.add_point((10, 10), (14, 10))
    path = s.save(tmp_path / "e.dragkit.json")
    a, b = DragSession.load(toy, path), DragSession.load(str(path), toy)  # the old order still works
    assert a.points == b.points == s.points and np.array_equal(a.latent.numpy(), b.latent.numpy())
    with pytest.raises(DragkitError, match="G must be a generator"):
        DragSession.load(str(path), str(path))


def test_run_yields_each_step_once_and_zero_steps_change_nothing(toy):
    s = DragSession(toy, seed=1)
    s.add_point((12, 13), (20, 13))
    results = list(s.run(max_steps=6))
    assert [r.step for r in results] == list(range(7)) and [r.done for r in results] == [False] * 6 + [True]
    assert results[0].points[0].handle == (12.0, 13.0) and results[0].distances[0] == 8.0
    t = DragSession(toy, seed=1)
    t.add_point((12, 13), (20, 13))
    (only,) = list(t.run(max_steps=0))
    assert only.done and only.step == 0 and np.array_equal(t.latent.numpy(), t.w0.numpy()) and not t.can_undo


def test_a_handle_outside_the_mask_is_reported(toy):
    s = DragSession(toy, seed=1)
    s.add_point((12, 13), (20, 13))
    s.add_point((15, 26), (15, 24))
    assert s.handles_outside_mask() == []  # no mask: everything may move
    mask = np.zeros(s.image_size, bool)
    mask[:20] = True
    s.set_mask(mask)
    assert s.handles_outside_mask() == [1]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        rc = cli_main(list(args))
    except SystemExit as exc:
        rc = exc.code
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _spec(tmp_path: Path, **over) -> str:
    spec = {"model": "toy", "seed": 1, "points": [{"handle": [12, 13], "target": [20, 13]}], "max_steps": 2}
    spec.update(over)
    p = tmp_path / "spec.json"
    p.write_text(json.dumps(spec))
    return str(p)


BAD_CLI = [
    # (subcommand and options, a word the one line must contain)
    (["generate", "--seed", "-5"], "--seed"),
    (["generate", "--seed", "5000000000"], "--seed"),
    (["generate", "--seed", "x"], "--seed"),
    (["generate", "--seed", ""], "--seed"),
    (["generate", "--seed", "1", "--psi", "9"], "--psi"),
    (["generate", "--seed", "1", "--psi", "nan"], "--psi"),
    (["generate", "--seed", "1", "--psi", "x"], "--psi"),
    (["generate", "--seed", "1", "--scale", "0"], "--scale"),
    (["generate", "--seed", "1", "--scale", "17"], "--scale"),
    (["generate", "--seed", "1", "--scale", "2.5"], "--scale"),
    (["generate", "--seed", "1-3", "--cols", "0"], "--cols"),
    (["generate", "--seed", "1", "--noise-mode", "loud"], "--noise-mode"),
    (["drag", "SPEC", "--scale", "0"], "--scale"),
    (["drag", "SPEC", "--scale", "x"], "--scale"),
    (["drag", "SPEC", "--fps", "0"], "--fps"),
    (["drag", "SPEC", "--threads", "0"], "--threads"),
    (["drag", "SPEC:seed=-1"], "seed"),
    (["drag", "SPEC:psi=9"], "psi"),
    (["drag", "SPEC:max_steps=-1"], "max_steps"),
    (["drag", "SPEC:max_steps='x'"], "max_steps"),
    (["drag", "SPEC:points=[{'handle': [40, 1], 'target': [2, 2]}]"], "outside"),
    (["drag", "SPEC:points=[{'handle': [1], 'target': [2, 2]}]"], "[x, y]"),
    (["drag", "SPEC:points=[]"], "points"),
    (["drag", "SPEC:options={'lr': 'fast'}"], "lr"),
    (["serve", "--port", "99999"], "--port"),
    (["serve", "--port", "x"], "--port"),
    (["serve", "--threads", "0"], "--threads"),
    (["serve", "--max-points", "0"], "max-points"),
    (["eval", "toy", "--n", "x"], "--n"),
    (["invert", "--image", "none.png", "--out", "e.dragkit.json", "--threads", "0"], "--threads"),
    (["train", "--cfg", "toy", "--outdir", "run", "--kimg", "-5"], "--kimg"),
    (["train", "--cfg", "toy", "--outdir", "run", "--batch", "0"], "--batch"),
    (["train", "--cfg", "toy", "--outdir", "run", "--seed", "-1"], "--seed"),
    (["train", "--cfg", "toy", "--outdir", "run", "--glr", "nan"], "--glr"),
    (["train", "--cfg", "toy", "--outdir", "run", "--style-mixing", "2"], "--style-mixing"),
    (["eval", "toy", "--n", "-1", "--out", "ev"], "--n"),
    (["eval", "toy", "--max-steps", "-3", "--out", "ev"], "--max-steps"),
]


@pytest.mark.parametrize("argv,needle", BAD_CLI, ids=[" ".join(a)[:60] for a, _ in BAD_CLI])
def test_every_bad_option_value_is_one_line_and_a_non_zero_exit(argv, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = []
    for a in argv:
        if a.startswith("SPEC"):
            over = {}
            if ":" in a:
                k, v = a[5:].split("=", 1)
                over[k] = eval(v)  # test table literals only
            args += ["--spec", _spec(tmp_path, **over), "--out", str(tmp_path / "o.png")]
        else:
            args.append(a)
    if argv[0] == "generate":
        args += ["--out", str(tmp_path / "g.png")]
    rc, _out, err = run_cli(capsys, *args)
    lines = err.strip().splitlines()
    assert rc != 0 and len(lines) == 1, err
    assert lines[0].startswith("dragkit: error: ") and needle in lines[0], lines[0]
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "g.png").exists()


def test_debug_is_accepted_before_or_after_the_subcommand(tmp_path):
    for argv in (["--debug", "generate", "--seed", "-5", "--out", "g.png"],
                 ["generate", "--seed", "-5", "--debug", "--out", "g.png"]):
        proc = subprocess.run([sys.executable, "-m", "dragkit", *argv], cwd=tmp_path, env=_env(OMP_NUM_THREADS="1"),
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and "Traceback" in proc.stderr and "DragkitError" in proc.stderr


def test_outputs_at_a_useful_size_with_crisp_pixels_and_marks(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "generate", "--model", "toy", "--seed", "1", "--out", str(tmp_path / "a.png"))
    assert rc == 0, err
    rc, _, err = run_cli(capsys, "generate", "--model", "toy", "--seed", "1", "--scale", "8",
                         "--out", str(tmp_path / "b.png"))
    assert rc == 0, err
    a, b = np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png"))
    assert b.shape == (256, 256, 3) and np.array_equal(b, a.repeat(8, 0).repeat(8, 1))  # nearest neighbour
    rc, _, err = run_cli(capsys, "drag", "--spec", _spec(tmp_path), "--out", str(tmp_path / "d.png"), "--annotate",
                         "--scale", "8", "--video", str(tmp_path / "d.gif"))
    assert rc == 0, err
    d = np.asarray(Image.open(tmp_path / "d.png").convert("RGB"))
    assert d.shape == (256, 256, 3)
    # the target's mark sits at the target's pixel centre of the enlarged image, in the target colour
    assert tuple(d[13 * 8 + 3, 20 * 8 + 3]) == (40, 120, 255)
    assert Image.open(tmp_path / "d.gif").size == (256, 256)


def test_the_cli_warns_about_a_handle_outside_the_mask(tmp_path, capsys):
    m = np.zeros((32, 32), np.uint8)
    m[20:] = 255  # only the bottom may move; the handle is at y = 13
    Image.fromarray(m).save(tmp_path / "m.png")
    spec = _spec(tmp_path, mask="m.png")
    rc, _, err = run_cli(capsys, "drag", "--spec", spec, "--out", str(tmp_path / "o.png"),
                         "--report", str(tmp_path / "r.json"))
    assert rc == 0
    assert "warning: handle 1 [12.0, 13.0] lies outside the mask" in err
    assert json.loads((tmp_path / "r.json").read_text())["handles_outside_mask"] == [0]


# -- the web app's server side ----------------------------------------------------


def test_the_app_serves_the_image_at_a_scale_with_consistent_names(model_home, sessions_dir):
    from test_server import close_tab, decode_data_url, open_tab, serving

    from dragkit.server.app import create_app

    with serving(create_app("tiny", sessions_dir=sessions_dir)) as c:
        tab = open_tab(c, seed=3)
        small = decode_data_url(tab.state["image"])
        base = f"/api/sessions/{tab.sid}/"
        r = c.get(base + "image.png?scale=8")
        assert r.status_code == 200 and "tiny-3-edit.png" in r.headers["content-disposition"]
        big = np.asarray(Image.open(__import__("io").BytesIO(r.content)).convert("RGB"))
        assert np.array_equal(big, small[..., :3].repeat(8, 0).repeat(8, 1))
        for bad in ("0", "17", "x", "2.5", "-3", "1000000"):
            r = c.get(base + f"image.png?scale={bad}")
            assert r.status_code == 400 and "scale" in r.json()["error"], bad
        assert "tiny-3.dragkit.json" in c.get(base + "session.dragkit.json").headers["content-disposition"]
        tab.do(type="add_point", handle=[4, 4], target=[8, 4])
        mask = np.zeros((32, 32), bool)
        mask[16:] = True
        from test_server import png_b64

        st = tab.do(type="set_mask", mask=png_b64(mask))
        assert st["handles_outside_mask"] == [0]
        close_tab(tab)


def test_refusing_a_tab_over_the_limit_is_not_an_error_when_the_tab_left_first():
    import asyncio
    from types import SimpleNamespace

    from starlette.websockets import WebSocketDisconnect

    from dragkit.server import handlers
    from dragkit.server import protocol as p
    from dragkit.server.settings import Limits

    class GoneWS:  # uvicorn, when the browser closed on reading the refusal
        async def close(self, code: int = 1000) -> None:
            raise WebSocketDisconnect(code=1006)

    sent = []
    conn = SimpleNamespace(tab=None, server=SimpleNamespace(live=16), limits=Limits(), ws=GoneWS(),
                           error=lambda m, code="bad_request", re=None: sent.append((code, m)))
    asyncio.run(handlers.hello(conn, p.Hello(type="hello", id=1)))  # before: WebSocketDisconnect, logged as a bug
    assert sent == [("limit", "too many open editor tabs (16); close one and reload")]
