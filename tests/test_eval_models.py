"""``dragkit eval`` on every model family: StyleGAN-Human's non-square (H x W = H x H/2) StyleGAN2 and
StyleGAN3 (tiny random-weight generators saved as native files, as a user would pass them).

What a user would notice: a paired run that crashes or scores NaN on such a model, handles or strips
of the wrong size, the authors'-loop baseline that reads a square map of a non-square model (it then
drags elsewhere than dragkit's engine does), the toy suite silently running on a model it cannot read.
"""
from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import pytest
import torch

from dragkit.cli import main
from dragkit.drag.session import DragOptions
from dragkit.errors import SpecError
from dragkit.eval.engines import run_drag
from support.generators import human


@pytest.fixture(scope="module")
def model_files(tmp_path_factory, GH, G3) -> dict[str, Path]:
    from dragkit.formats import save_native

    d = tmp_path_factory.mktemp("eval-models")
    save_native(GH, d / "human")
    save_native(G3, d / "sg3")
    return {"human": d / "human.safetensors", "stylegan3": d / "sg3.safetensors"}


def _png_size(text: str) -> tuple[int, int]:
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(text))).size


@pytest.mark.parametrize("which, size", [("human", (16, 32)), ("stylegan3", (32, 32))])
def test_paired_runs_on_the_model_and_scores_finite_numbers(which, size, model_files, tmp_path):
    pytest.importorskip("cv2", reason="the paired suite needs the optional extra dragkit[eval]")
    out = tmp_path / which
    assert main(["eval", "paired", "--model", str(model_files[which]), "--n", "2", "--max-steps", "8",
                 "--pairs", "8", "--perturb", "1", "--strips", "2", "--out", str(out), "--quiet"]) == 0
    rep = json.loads((out / "report.json").read_text())
    m = rep["groups"][0]["metrics"]
    assert m["n"] == 2
    for key in ("mse", "mse_noedit", "ssim", "ssim_noedit", "flow_px", "steps_mean", "handle_px"):
        assert m[key] is not None and math.isfinite(m[key]), (key, m)
    assert m["mse_noedit"] > 0  # the perturbation changed the image
    W, H = size
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(recs) == 2
    for r in recs:
        assert r["status"] == "ok" and r["metrics"]["steps"] > 0
        # handles, targets and the tracked handles are [x, y] inside the W x H image
        for x, y in r["problem"]["handles"] + r["problem"]["targets"] + r["metrics"]["final_handles"]:
            assert 0 <= x <= W - 1 and 0 <= y <= H - 1
        assert any(x > 0 for x, _ in r["problem"]["handles"])
        assert {k: _png_size(v) for k, v in r["images"].items()} == {k: (W, H) for k in ("before", "after", "target")}
    assert (rep["model"]["width"], rep["model"]["height"]) == (W, H)
    assert rep["files"]["strips"] and all((out / f).is_file() for f in rep["files"]["strips"])
    if W != H:
        assert "16x32 px (width x height)" in (out / "report.md").read_text()
    from PIL import Image

    # 2 examples x (before, after, target), each cell the W x H image x 4, 2 px apart
    assert Image.open(out / rep["files"]["strips"][0]).size == (2 * (4 * W + 2) + 2, 3 * (4 * H + 2) + 2)


def test_authors_loop_and_dragkit_make_the_same_drag_on_a_non_square_model(GH):
    """With the authors' norm (L2) and integer handles both loops agree on an H x W model - so the
    baseline resizes the map to H x W and bounds its disk and search window per axis."""
    ws = GH.ws_from_seed(1, psi=0.7)
    opts = DragOptions(tracking="l2", lr=0.02)
    handles, targets = [(4, 20), (11, 9)], [(9, 24), (8, 14)]  # x up to 11 of 16, y up to 24 of 32
    a = run_drag(GH, ws, handles, targets, opts, max_steps=10, engine="authors")
    d = run_drag(GH, ws, handles, targets, opts, max_steps=10, engine="dragkit")
    assert a.image.shape == d.image.shape == (1, 3, 32, 16)
    assert a.steps == d.steps == 10 and a.handles == d.handles and len(a.trace) == len(d.trace)
    assert float((a.latent - d.latent).abs().max()) < 2e-3
    assert torch.allclose(a.image, d.image, atol=5e-3)
    assert a.trace[-1] < a.trace[0]  # and it dragged towards the targets


def test_authors_loop_on_stylegan3_resizes_the_whole_layer_as_the_authors_do(G3):
    """StyleGAN3: the baseline reads layer ``feature_layer`` stretched over the image, margin included."""
    import torch.nn.functional as F

    from dragkit.eval.authors import AuthorsLoop

    ws = G3.ws_from_seed(2, psi=0.7)
    opts = DragOptions(lr=0.02, feature_layer=2).resolved(G3)
    loop = AuthorsLoop(G3, ws, [(12, 16)], [(20, 16)], opts)
    feat = loop._features()
    _img, layers = G3.synthesis.run(ws, feature_layers=[2])
    assert layers[2].shape[-1] == 52  # 32 samples per image width and a 10 px margin on each side
    assert torch.allclose(feat, F.interpolate(layers[2], [32, 32], mode="bilinear", align_corners=False))
    out = run_drag(G3, ws, [(12, 16)], [(20, 16)], DragOptions(lr=0.02, feature_layer=2), max_steps=6,
                   engine="authors")
    assert out.steps == 6 and all(math.isfinite(t) for t in out.trace) and out.image.shape == (1, 3, 32, 32)


def test_toy_suite_refuses_a_non_square_model_with_one_error(model_files, tmp_path, capsys):
    out = tmp_path / "toy"
    assert main(["eval", "toy", "--model", str(model_files["human"]), "--n", "1", "--out", str(out),
                 "--quiet"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "16x32" in err[0] and "paired" in err[0], err
    assert not (out / "results.jsonl").exists()
    from dragkit.eval.suites import get_suite

    with pytest.raises(SpecError, match="square"):
        get_suite("toy").setup(human(0), {})
