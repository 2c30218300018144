"""Speed options of a drag (issue 18): ``precision`` (fp32 | bf16 | auto) and ``compile``.

They are declared once (``drag/options.py``) and carried by the spec, session
files, the web app and eval sweeps; bf16 steps give finite, float32 losses and
move handles; compiled steps give the eager steps' drag.  The fp32 path's
exactness is tested elsewhere, unchanged (``tests/test_drag.py``).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import dragkit.utils
from dragkit.drag.core import mask_loss, motion_supervision_loss
from dragkit.drag.features import feature_source, source_features
from dragkit.drag.options import OPTION_NAMES, PRECISIONS, auto_precision, option_limits
from dragkit.drag.session import DragOptions, DragSession
from dragkit.drag.spec import parse_spec
from dragkit.errors import SpecError
from support.generators import drag_generator, on_device


@pytest.fixture(scope="module")
def G32():
    return drag_generator(32)


def test_precision_and_compile_are_options_with_one_clear_error_each(G32):
    assert {"precision", "compile"} <= set(OPTION_NAMES)
    lim = option_limits(G32)
    assert lim["precision"].to_json()["choices"] == list(PRECISIONS) == ["fp32", "bf16", "auto"]
    assert lim["compile"].to_json() == {"kind": "bool", "optional": False, "choices": [False, True]}
    assert DragOptions().precision == "fp32" and DragOptions().compile is False
    for bad, msg in [({"precision": "fp16"}, "precision must be one of fp32, bf16, auto"),
                     ({"compile": "yes"}, "compile must be true or false")]:
        with pytest.raises(SpecError, match=msg):
            DragOptions().replace(bad, G32)


def test_auto_precision_is_bf16_only_with_native_bf16_and_a_mask(G32, monkeypatch):
    """The rule: on a CPU, bf16 for a masked drag where the hardware computes bf16 natively, fp32 otherwise."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert auto_precision("cpu") == auto_precision("cpu", masked=True) == "fp32"
    assert DragOptions(precision="auto").resolved(G32, masked=True).precision == "fp32"
    assert DragOptions(precision="auto").precision == "auto"  # the unresolved option keeps 'auto'
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert auto_precision("cpu", masked=True) == "bf16"
    assert auto_precision("cpu") == "fp32"  # a windowed step: measured slower in bf16
    assert DragOptions(precision="auto").resolved(G32, masked=True).precision == "bf16"
    assert DragOptions(precision="auto").resolved(G32).precision == "fp32"
    # a session resolves it with its own mask when the drag starts
    s = DragSession(G32, seed=2, options=DragOptions(precision="auto"))
    s.add_point((12, 14), (18, 16))
    s.begin_drag()
    assert s._drag.opts.precision == "fp32"
    s = DragSession(G32, seed=2, options=DragOptions(precision="auto"))
    s.add_point((12, 14), (18, 16))
    m = np.zeros((32, 32), dtype=bool)
    m[4:28, 4:28] = True
    s.set_mask(m)
    s.begin_drag()
    assert s._drag.opts.precision == "bf16"
    # without torch's check, /proc/cpuinfo's flags decide
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.setattr(dragkit.utils, "_cpu_flags", lambda: {"avx2", "fma"})
    assert auto_precision("cpu", masked=True) == "fp32"
    monkeypatch.setattr(dragkit.utils, "_cpu_flags", lambda: {"avx2", "amx_bf16"})
    assert auto_precision("cpu", masked=True) == "bf16"


def test_spec_session_file_server_and_eval_carry_precision(G32, tmp_path):
    spec = parse_spec({"model": "x", "seed": 1, "points": [{"handle": [5, 5], "target": [9, 9]}],
                       "options": {"precision": "bf16", "compile": False}}, tmp_path)
    assert spec.options.precision == "bf16" and spec.options.compile is False
    s = DragSession(G32, seed=1, options=DragOptions(precision="auto"))
    s.add_point((10, 10), (14, 12))
    list(s.run(max_steps=2))
    t = DragSession.from_bytes(s.to_bytes(), G32)
    assert t.options.precision == "auto"
    state = json.loads(s.to_bytes())
    state["options"]["precision"] = "int8"
    with pytest.raises(SpecError, match="precision must be one of"):
        t.set_state(state)
    assert t.options.precision == "auto"  # unchanged
    from dragkit.server.engine import APP_OPTIONS

    assert {"precision", "compile"} <= set(APP_OPTIONS)
    from dragkit.eval.variants import build_variants

    vs = build_variants(G32, sweeps=["precision=bf16", "compile=true"])
    assert [v.label for v in vs] == ["base", "precision=bf16", "compile=True"]
    assert vs[1].options["precision"] == "bf16" and vs[2].options["compile"] is True


def test_bf16_features_loss_and_gradient_are_float32_and_close_to_fp32(G32):
    """Autocast reaches the synthesis only: the map comes back float32, the loss and its gradient
    w.r.t. the codes are finite float32, and they agree with fp32 to bf16's accuracy."""
    src = feature_source(G32)
    ws0 = G32.ws_from_seed(3, psi=0.7)
    handles = torch.tensor([[12.0, 14.0]], dtype=torch.float64)
    targets = torch.tensor([[18.0, 16.0]], dtype=torch.float64)
    out = {}
    for prec in ("fp32", "bf16"):
        w = ws0[:, :6].clone().requires_grad_(True)
        ws = torch.cat([w, ws0[:, 6:]], dim=1)
        feat, origin = source_features(G32, ws, src, None, precision=prec)
        assert feat.dtype == torch.float32
        loss = motion_supervision_loss(feat, handles, targets, 4.0, None, geometry=src.geometry)
        assert loss.dtype == torch.float32 and math.isfinite(float(loss.detach()))
        (g,) = torch.autograd.grad(loss, [w])
        assert g.dtype == torch.float32 and bool(torch.isfinite(g).all())
        out[prec] = (feat.detach(), float(loss), g)
    f32, f16 = out["fp32"][0], out["bf16"][0]
    assert not torch.equal(f32, f16)  # bf16 really ran
    assert float((f16 - f32).norm() / f32.norm()) < 0.05
    assert abs(out["bf16"][1] - out["fp32"][1]) < 0.1 * out["fp32"][1]
    cos = torch.nn.functional.cosine_similarity(out["bf16"][2].flatten(), out["fp32"][2].flatten(), dim=0)
    assert float(cos) > 0.9


def test_bf16_mask_term_starts_at_zero(G32):
    """F0 is taken in the drag's own precision: at the start latent the fixed-region term is exactly 0."""
    src = feature_source(G32)
    ws = G32.ws_from_seed(4, psi=0.7)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[8:24, 8:24] = True
    feat0, _ = source_features(G32, ws, src, None, precision="bf16")
    feat, _ = source_features(G32, ws.clone(), src, None, precision="bf16")
    assert float(mask_loss(feat, feat0, mask, None, geometry=src.geometry)) == 0.0


@pytest.mark.parametrize("masked", [False, True])
def test_bf16_drag_moves_the_handle(G32, device, masked):
    G = on_device(G32, device)
    s = DragSession(G, seed=2, options=DragOptions(precision="bf16", r1=4.0))
    s.add_point((12, 14), (18, 16))
    if masked:
        m = np.zeros((32, 32), dtype=bool)
        m[4:28, 4:28] = True
        s.set_mask(m)
    start = math.dist((12, 14), (18, 16))
    # 80 steps: the masked drag of this random model creeps for its first ~40 steps
    # (fp32 alike), and where it stands at step 40 depends on the CPU's kernels
    results = list(s.run(max_steps=80))
    assert torch.isfinite(s.latent).all()
    assert not torch.equal(s.latent, G.ws_from_seed(2).to(s.latent.device))
    final = results[-1].distances[0]
    assert final < start - 2.0, [r.distances[0] for r in results]


@pytest.mark.slow
def test_compiled_steps_give_the_eager_drag():
    """``compile=True``: the same tracked handles and latents (to float32 summation order) as eager steps.
    Slow: torch.compile of the windowed run takes tens of seconds on a loaded 2-core CPU."""
    G = drag_generator(16)
    runs = {}
    for compiled in (False, True):
        s = DragSession(G, seed=5, options=DragOptions(compile=compiled, r1=3.0, r2=3, lr=0.05))
        s.add_point((6, 7), (11, 9))
        res = list(s.run(max_steps=4))
        runs[compiled] = (s.latent.clone(), [r.points[0].handle for r in res], [r.distances[0] for r in res])
    (l0, h0, d0), (l1, h1, d1) = runs[False], runs[True]
    assert h0 == h1
    assert float((l0 - l1).abs().max()) < 1e-4
    assert d1[-1] < d1[0]
