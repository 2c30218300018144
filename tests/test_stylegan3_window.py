"""StyleGAN3's windowed run: a layer's output on a box, computed from the part of every earlier map
it reads, is the full synthesis cropped to that box - values and gradients - on configs T and R.

What a user would notice if it broke: a drag on a StyleGAN3 model that moves or tracks differently
when its features are computed on a window (a wrong padding or filter phase at the window's edge
shifts every feature by a fraction of a pixel, or leaks the map's zero border inside).
"""
from __future__ import annotations

import random

import pytest
import torch

from dragkit.nets.stylegan3 import Generator
from support.generators import randomize_stylegan3

W_DIM = 8


def _make(seed: int = 0, res: int = 32, **kwargs) -> Generator:
    torch.manual_seed(seed)
    kw = dict(channel_base=512, channel_max=16, num_layers=6)
    kw.update(kwargs)
    G = Generator(W_DIM, 0, W_DIM, res, 3, **kw)
    randomize_stylegan3(G, seed + 1)  # trained-looking biases, input transform and magnitudes
    return G.eval().requires_grad_(False)


CONFIGS = {
    "T": dict(),
    "R": dict(conv_kernel=1, use_radial_filters=True, channel_base=1024, channel_max=32),
    "T64": dict(res=64, num_layers=8),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def G(request) -> Generator:
    return _make(0, **CONFIGS[request.param])


def _boxes(size: int, rng: random.Random, count: int) -> list[tuple[int, int, int, int]]:
    out = [(0, 0, size, size), (0, 0, 1, 1), (size - 1, size - 1, size, size), (size // 2, 0, size // 2 + 3, size)]
    for _ in range(count):
        x0, y0 = rng.randrange(size), rng.randrange(size)
        out.append((x0, y0, rng.randrange(x0 + 1, size + 1), rng.randrange(y0 + 1, size + 1)))
    return out


def test_windowed_layers_equal_the_full_run_on_random_boxes(G, device):
    from support.generators import on_device

    G = on_device(G, device)
    ws = G.ws_from_seed(1, psi=0.7).to(device)
    rng = random.Random(0)
    for idx in range(G.synthesis.num_layers + 1):  # every layer, ToRGB included
        _, feats = G.synthesis.run(ws, feature_layers=[idx], return_image=False)
        full = feats[idx]
        scale = float(full.abs().max())
        for box in _boxes(full.shape[-1], rng, 5):
            x0, y0, x1, y1 = box
            part = G.synthesis.run_window(ws, idx, box)
            assert part.shape == (1, full.shape[1], y1 - y0, x1 - x0)
            err = float((part - full[:, :, y0:y1, x0:x1]).abs().max())
            assert err <= 1e-5 * max(scale, 1.0), (idx, box, err, scale)


def test_windowed_gradients_equal_the_full_runs(G):
    """What a drag step differentiates: a loss on the window of the default feature layer."""
    idx = G.synthesis.num_layers // 2
    S = G.synthesis.layer_geometry(idx).size
    box = (S // 2 - 3, S // 3, S // 2 + 4, S // 3 + 5)
    ws0 = G.ws_from_seed(2, psi=0.7)
    weight = torch.randn(1, G.synthesis.layer_geometry(idx).channels, box[3] - box[1], box[2] - box[0],
                         generator=torch.Generator().manual_seed(0))

    def grad(windowed: bool) -> torch.Tensor:
        ws = ws0.clone().requires_grad_(True)
        if windowed:
            f = G.synthesis.run_window(ws, idx, box)
        else:
            f = G.synthesis.run(ws, feature_layers=[idx], return_image=False)[1][idx][:, :, box[1]:box[3], box[0]:box[2]]
        (f * weight).sum().backward()
        return ws.grad

    g_win, g_full = grad(True), grad(False)
    assert float(g_full.abs().max()) > 0
    assert torch.allclose(g_win, g_full, rtol=1e-4, atol=1e-5 * float(g_full.abs().max()))
    assert torch.equal(g_win[:, idx + 2:], torch.zeros_like(g_win[:, idx + 2:]))  # later codes untouched


def test_window_plan_shrinks_the_late_maps_and_bad_boxes_are_refused():
    G = _make(0, res=64, num_layers=8)
    syn = G.synthesis
    idx = 5
    S = syn.layer_geometry(idx).size
    plan = syn.window_plan(idx, (S // 2, S // 2, S // 2 + 4, S // 2 + 4))
    assert len(plan) == idx + 2 and plan[-1] == (S // 2, S // 2, S // 2 + 4, S // 2 + 4)
    # the input and the layers before idx are computed on boxes inside their maps, smaller than them
    # near the feature layer
    sizes = [syn.input.size] + [syn.layer(i).out_size for i in range(idx + 1)]
    for (x0, y0, x1, y1), size in zip(plan, sizes):
        assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
    assert (plan[-2][2] - plan[-2][0]) < sizes[-2]
    ws = G.ws_from_seed(0)
    with pytest.raises(ValueError, match="not inside"):
        syn.run_window(ws, idx, (0, 0, S + 1, 4))
    with pytest.raises(ValueError, match="no synthesis layer"):
        syn.run_window(ws, syn.num_layers + 1, (0, 0, 1, 1))
    layer = syn.layer(idx)
    need = layer.input_box((0, 0, 4, 4))
    with pytest.raises(ValueError, match="does not contain"):
        layer.run_window(torch.zeros(1, layer.in_channels, 2, 2), (need[0], need[1], need[0] + 2, need[1] + 2),
                         ws[:, idx + 1], (0, 0, 4, 4))
