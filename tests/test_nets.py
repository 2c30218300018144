"""The StyleGAN2 generator: seeds, truncation, batching, and early-stopping feature runs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dragkit.nets import Generator


@pytest.fixture(scope="module")
def G() -> Generator:
    torch.manual_seed(0)
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=3,
                  mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 256, "channel_max": 16})
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength") or (name.endswith("bias") and ".affine." not in name):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        G.mapping.w_avg.copy_(torch.randn(16, generator=gen))
    return G.eval().requires_grad_(False)


def test_nvidia_attributes_and_output_contract(G):
    assert (G.z_dim, G.w_dim, G.c_dim, G.img_resolution, G.img_channels) == (16, 16, 0, 32, 3)
    assert G.num_ws == 2 * 5 - 2  # 2*log2(res) - 2
    img = G(G.z_from_seed(0), None, truncation_psi=0.7)
    assert img.shape == (1, 3, 32, 32) and img.dtype == torch.float32 and torch.isfinite(img).all()


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


def test_batch_matches_single_samples(G):
    """The batched modulated conv path must render what the per-sample path renders."""
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
