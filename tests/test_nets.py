"""The StyleGAN2 generator: seeds, truncation, batching, and early-stopping feature runs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dragkit.nets import Generator
from support.generators import on_device, random_generator


@pytest.fixture(scope="module")
def G() -> Generator:
    return random_generator(32, channel_base=256, channel_max=16)


def test_nvidia_attributes_and_output_contract(G, device):
    G = on_device(G, device)
    assert (G.z_dim, G.w_dim, G.c_dim, G.img_resolution, G.img_channels) == (16, 16, 0, 32, 3)
    assert G.num_ws == 2 * 5 - 2  # 2*log2(res) - 2
    img = G(G.z_from_seed(0), None, truncation_psi=0.7)
    assert img.shape == (1, 3, 32, 32) and img.dtype == torch.float32 and torch.isfinite(img).all()
    assert img.device.type == device


def test_z_from_seed_is_nvidias_numpy_draw(G):
    for seed in (0, 1, 12345):
        expected = torch.from_numpy(np.random.RandomState(seed).randn(1, 16)).float()
        assert torch.equal(G.z_from_seed(seed), expected)


def test_same_seed_same_image_and_different_seeds_differ(G):
    with torch.no_grad():
        a = G.synthesis(G.ws_from_seed(7, psi=0.7), noise_mode="const")
        b = G.synthesis(G.ws_from_seed(7, psi=0.7), noise_mode="const")
        c = G.synthesis(G.ws_from_seed(8, psi=0.7), noise_mode="const")
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 0.1


def test_truncation_psi_zero_gives_w_avg(G):
    ws = G.ws_from_seed(3, psi=0.0)
    assert torch.allclose(ws, G.mapping.w_avg.expand_as(ws))


def test_noise_modes(G):
    ws = G.ws_from_seed(0)
    with torch.no_grad():
        const = [G.synthesis(ws, noise_mode="const") for _ in range(2)]
        rand = [G.synthesis(ws, noise_mode="random") for _ in range(2)]
        none = G.synthesis(ws, noise_mode="none")
    assert torch.equal(*const)
    assert not torch.equal(*rand)
    assert not torch.equal(none, const[0])
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis.run(ws, noise_mode="bogus")


def test_batch_matches_single_samples(G, device):
    """The batched modulated conv path must render what the per-sample path renders."""
    G = on_device(G, device)
    ws = torch.cat([G.ws_from_seed(s, psi=0.7) for s in (1, 2, 3)])
    with torch.no_grad():
        batch = G.synthesis(ws, noise_mode="const")
        single = torch.cat([G.synthesis(ws[i : i + 1], noise_mode="const") for i in range(3)])
    assert torch.allclose(batch, single, atol=1e-5)


@pytest.mark.parametrize("res", [4, 8, 16])
def test_feature_run_matches_full_run_and_stops_early(G, res):
    ws = G.ws_from_seed(5, psi=0.7)
    with torch.no_grad():
        img_full, feats_full = G.synthesis.run(ws, feature_blocks=[res, 32])
    ran: list[str] = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, name=name: ran.append(name))
        for name, m in G.synthesis.named_modules()
        if name.startswith("b") and "." not in name or name.endswith("torgb")
    ]
    try:
        with torch.no_grad():
            img, feats = G.synthesis.run(ws, feature_blocks=[res], return_image=False)
    finally:
        for h in hooks:
            h.remove()
    assert img is None and list(feats) == [res]
    assert feats[res].shape == (1, G.synthesis.block_channels(res), res, res)
    assert torch.equal(feats[res], feats_full[res])
    assert ran == [f"b{r}" for r in G.synthesis.block_resolutions if r <= res]  # no later block, no torgb
    assert img_full.shape == (1, 3, 32, 32)


def test_feature_run_returns_several_blocks_and_the_image(G):
    ws = G.ws_from_seed(5)
    with torch.no_grad():
        img, feats = G.synthesis.run(ws, feature_blocks=[8, 16])
        ref = G.synthesis(ws)
    assert sorted(feats) == [8, 16] and torch.equal(img, ref)


def test_feature_run_rejects_unknown_block(G):
    with pytest.raises(ValueError, match="no synthesis block"):
        G.synthesis.run(G.ws_from_seed(0), feature_blocks=[12])


def test_ws_shape_is_checked(G):
    with pytest.raises(ValueError, match="ws must have shape"):
        G.synthesis(torch.zeros(1, 3, 16))


def test_feature_gradients_flow_to_ws(G):
    ws = G.ws_from_seed(2).clone().requires_grad_(True)
    with torch.enable_grad():
        _, feats = G.synthesis.run(ws, feature_blocks=[16], return_image=False)
        feats[16].square().mean().backward()
    # b4..b16 consume codes 0..4; code 5 (b16's torgb = b32's conv0) and later are never used
    assert (ws.grad[0, :5].abs().sum(-1) > 0).all()
    assert ws.grad[0, 5:].abs().sum() == 0


def test_conditional_generator_needs_c():
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=3, w_dim=8, img_resolution=8, mapping_kwargs={"num_layers": 1},
                  synthesis_kwargs={"channel_base": 64, "channel_max": 8}).eval()
    z = G.z_from_seed(0)
    with torch.no_grad():
        a = G(z, torch.eye(3)[:1])
        b = G(z, torch.eye(3)[1:2])
    assert not torch.equal(a, b)
    with pytest.raises(ValueError, match="conditional"):
        G(z, None)


# ----------------------------------------------------------------------------
# Windowed runs: a block's output on a box equals the full synthesis there.


def _windowed_generator(arch: str, square: bool, seed: int) -> Generator:
    return random_generator(32, z_dim=8, w_dim=8, seed=seed, channel_base=128, channel_max=8,
                            architecture=arch, square=square)


def _plan(syn, res, box):
    """Boxes of every block b{res} depends on, from the network's own input_box."""
    plan = {res: box}
    step = syn.input_box(res, box)
    while step is not None:
        plan[step[0]] = step[1]
        step = syn.input_box(*step)
    return plan


@pytest.mark.parametrize("square", [True, False], ids=["square", "h-by-half-h"])
@pytest.mark.parametrize("arch", ["skip", "resnet", "orig"])
def test_windowed_run_equals_the_full_synthesis_on_random_boxes(arch, square, device):
    G = _windowed_generator(arch, square, seed=2).to(device)
    syn = G.synthesis
    ws = torch.randn(1, G.num_ws, G.w_dim).to(device)  # a W+ code with different rows
    gen = torch.Generator().manual_seed(0)
    for noise_mode in ("const", "none"):
        _img, feats = syn.run(ws, noise_mode=noise_mode, feature_blocks=syn.block_resolutions, return_image=False)
        for res in syn.block_resolutions:
            h, w = syn.block_size(res)
            boxes = [(0, 0, w, h), (w - 1, h - 1, w, h)]  # the whole map, the last pixel
            for _ in range(6):
                x0, y0 = int(torch.randint(0, w, (1,), generator=gen)), int(torch.randint(0, h, (1,), generator=gen))
                x1 = int(torch.randint(x0 + 1, w + 1, (1,), generator=gen))
                y1 = int(torch.randint(y0 + 1, h + 1, (1,), generator=gen))
                boxes.append((x0, y0, x1, y1))
            for box in boxes:
                win = syn.run_window(ws, res, _plan(syn, res, box), noise_mode=noise_mode)
                want = feats[res][:, :, box[1] : box[3], box[0] : box[2]]
                assert win.shape == want.shape
                assert torch.allclose(win, want, atol=1e-5), (arch, square, noise_mode, res, box)


def test_windowed_run_gradients_equal_the_full_synthesis(G, device):
    G = on_device(G, device)
    syn = G.synthesis
    box = (3, 9, 8, 16)  # touches b16's bottom edge
    grads = []
    for windowed in (False, True):
        ws = G.ws_from_seed(4, psi=0.7).clone().requires_grad_(True)
        with torch.enable_grad():
            if windowed:
                f = syn.run_window(ws, 16, _plan(syn, 16, box))
            else:
                f = syn.run(ws, feature_blocks=[16], return_image=False)[1][16][:, :, 9:16, 3:8]
            (f * torch.linspace(-1, 1, f.numel(), device=f.device).reshape(f.shape)).sum().backward()
        grads.append(ws.grad)
    assert grads[0].abs().max() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_windowed_run_refuses_a_plan_that_misses_what_a_block_reads(G):
    syn = G.synthesis
    ws = G.ws_from_seed(1)
    plan = _plan(syn, 16, (4, 4, 8, 8))
    x0, y0, x1, y1 = plan[8]
    plan[8] = (x0 + 1, y0, x1, y1)  # one column short
    with pytest.raises(ValueError, match="needs the previous block"):
        syn.run_window(ws, 16, plan)
    with pytest.raises(ValueError, match="not inside"):
        syn.run_window(ws, 16, {**plan, 16: (0, 0, 17, 4)})
    with pytest.raises(ValueError, match="const"):
        syn.run_window(ws, 16, _plan(syn, 16, (4, 4, 8, 8)), noise_mode="random")
