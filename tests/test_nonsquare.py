"""Non-square StyleGAN2 (StyleGAN-Human's ``square=False``): H x H/2 images natively, NVIDIA's layout."""
from __future__ import annotations

import pytest
import torch

from dragkit.drag.features import block_features
from dragkit.formats.native import load_native, save_native
from dragkit.nets import Generator
from support.generators import frozen, randomize


def _make(arch: str = "skip", seed: int = 0, res: int = 32) -> Generator:
    torch.manual_seed(seed)
    G = Generator(8, 0, 8, res, 3, mapping_kwargs={"num_layers": 2},
                  synthesis_kwargs={"channel_base": 128, "channel_max": 8, "architecture": arch, "square": False})
    return frozen(randomize(G, seed + 1))


@pytest.fixture(scope="module")
def G() -> Generator:
    return _make()


# StyleGAN-Human's training_scripts/sg2/training/networks.py, Generator(8, 0, 8, 16, False, 3,
# mapping_kwargs={'num_layers': 2}, synthesis_kwargs={'channel_base': 64, 'channel_max': 8}):
# its state dict, printed from that code once.  Same names as the square layout; maps are H x H/2.
STYLEGAN_HUMAN_16x8 = {
    "mapping.fc0.weight": (8, 8), "mapping.fc0.bias": (8,), "mapping.fc1.weight": (8, 8), "mapping.fc1.bias": (8,),
    "mapping.w_avg": (8,),
    "synthesis.b4.const": (8, 4, 2), "synthesis.b4.resample_filter": (4, 4),
    "synthesis.b4.conv1.weight": (8, 8, 3, 3), "synthesis.b4.conv1.noise_strength": (), "synthesis.b4.conv1.bias": (8,),
    "synthesis.b4.conv1.resample_filter": (4, 4), "synthesis.b4.conv1.noise_const": (4, 2),
    "synthesis.b4.conv1.affine.weight": (8, 8), "synthesis.b4.conv1.affine.bias": (8,),
    "synthesis.b4.torgb.weight": (3, 8, 1, 1), "synthesis.b4.torgb.bias": (3,),
    "synthesis.b4.torgb.affine.weight": (8, 8), "synthesis.b4.torgb.affine.bias": (8,),
    "synthesis.b8.resample_filter": (4, 4),
    "synthesis.b8.conv0.weight": (8, 8, 3, 3), "synthesis.b8.conv0.noise_strength": (), "synthesis.b8.conv0.bias": (8,),
    "synthesis.b8.conv0.resample_filter": (4, 4), "synthesis.b8.conv0.noise_const": (8, 4),
    "synthesis.b8.conv0.affine.weight": (8, 8), "synthesis.b8.conv0.affine.bias": (8,),
    "synthesis.b8.conv1.weight": (8, 8, 3, 3), "synthesis.b8.conv1.noise_strength": (), "synthesis.b8.conv1.bias": (8,),
    "synthesis.b8.conv1.resample_filter": (4, 4), "synthesis.b8.conv1.noise_const": (8, 4),
    "synthesis.b8.conv1.affine.weight": (8, 8), "synthesis.b8.conv1.affine.bias": (8,),
    "synthesis.b8.torgb.weight": (3, 8, 1, 1), "synthesis.b8.torgb.bias": (3,),
    "synthesis.b8.torgb.affine.weight": (8, 8), "synthesis.b8.torgb.affine.bias": (8,),
    "synthesis.b16.resample_filter": (4, 4),
    "synthesis.b16.conv0.weight": (4, 8, 3, 3), "synthesis.b16.conv0.noise_strength": (), "synthesis.b16.conv0.bias": (4,),
    "synthesis.b16.conv0.resample_filter": (4, 4), "synthesis.b16.conv0.noise_const": (16, 8),
    "synthesis.b16.conv0.affine.weight": (8, 8), "synthesis.b16.conv0.affine.bias": (8,),
    "synthesis.b16.conv1.weight": (4, 4, 3, 3), "synthesis.b16.conv1.noise_strength": (), "synthesis.b16.conv1.bias": (4,),
    "synthesis.b16.conv1.resample_filter": (4, 4), "synthesis.b16.conv1.noise_const": (16, 8),
    "synthesis.b16.conv1.affine.weight": (4, 8), "synthesis.b16.conv1.affine.bias": (4,),
    "synthesis.b16.torgb.weight": (3, 4, 1, 1), "synthesis.b16.torgb.bias": (3,),
    "synthesis.b16.torgb.affine.weight": (4, 8), "synthesis.b16.torgb.affine.bias": (4,),
}


def test_state_dict_matches_stylegan_humans_layout():
    G = Generator(8, 0, 8, 16, 3, mapping_kwargs={"num_layers": 2},
                  synthesis_kwargs={"channel_base": 64, "channel_max": 8}, square=False)
    assert {k: tuple(v.shape) for k, v in G.state_dict().items()} == STYLEGAN_HUMAN_16x8
    assert G.init_kwargs["synthesis_kwargs"]["square"] is False  # flat keyword recorded nested


def test_renders_h_by_half_h_images_and_block_maps(G):
    assert (G.img_resolution, G.img_height, G.img_width) == (32, 32, 16)
    img = G(G.z_from_seed(0), None, truncation_psi=0.7)
    assert img.shape == (1, 3, 32, 16) and torch.isfinite(img).all()
    img2, feats = G.synthesis.run(G.ws_from_seed(0, psi=0.7), feature_blocks=[4, 8, 16, 32])
    assert torch.equal(img2, img)
    for r, f in feats.items():
        assert f.shape[2:] == (r, r // 2) == G.synthesis.block_size(r)
    for mode in ("random", "none"):
        assert G.synthesis(G.ws_from_seed(0), noise_mode=mode).shape == (1, 3, 32, 16)


def test_square_generators_are_unchanged():
    torch.manual_seed(0)
    a = Generator(8, 0, 8, 16, 3, synthesis_kwargs={"channel_base": 64, "channel_max": 8})
    assert "square" not in a.init_kwargs["synthesis_kwargs"]
    assert (a.img_height, a.img_width) == (16, 16) and a.synthesis.block_size(8) == (8, 8)
    torch.manual_seed(0)
    b = Generator(8, 0, 8, 16, 3, synthesis_kwargs={"channel_base": 64, "channel_max": 8, "square": True})
    ws = a.ws_from_seed(1)
    assert torch.equal(a.synthesis(ws), b.synthesis(ws))


def test_square_must_be_a_bool():
    with pytest.raises(ValueError, match="square must be True or False"):
        Generator(8, 0, 8, 16, 3, synthesis_kwargs={"square": "no"})


@pytest.mark.parametrize("arch", ["skip", "orig", "resnet"])
def test_windowed_block_features_are_exact(arch):
    """Features on a window (the drag engine's hot path) equal the full map, at the right edge too."""
    G = _make(arch, seed=3)
    ws = G.ws_from_seed(2, psi=0.7)
    gen = torch.Generator().manual_seed(0)
    for res in (8, 16, 32):
        _img, feats = G.synthesis.run(ws, feature_blocks=[res], return_image=False)
        full = feats[res]
        mine, origin = block_features(G, ws, res)
        assert origin == (0, 0) and torch.allclose(mine, full, atol=1e-5)
        h, w = G.synthesis.block_size(res)
        boxes = [(w - 3, 0, w, 4), (0, h - 5, 2, h)]
        for _ in range(4):
            x0, y0 = (int(torch.randint(0, n - 1, (1,), generator=gen)) for n in (w, h))
            x1 = int(torch.randint(x0 + 1, w + 1, (1,), generator=gen))
            y1 = int(torch.randint(y0 + 1, h + 1, (1,), generator=gen))
            boxes.append((x0, y0, x1, y1))
        for box in boxes:
            crop, origin = block_features(G, ws, res, box)
            assert origin == (box[0], box[1])
            assert torch.allclose(crop, full[:, :, box[1] : box[3], box[0] : box[2]], atol=1e-5), (res, box)
    with pytest.raises(ValueError, match="not inside"):
        block_features(G, ws, 16, (0, 0, 9, 4))  # b16 is 16 high but 8 wide


def test_windowed_feature_gradients_match_the_full_map(G):
    ws0 = G.ws_from_seed(4, psi=0.7)
    box = (5, 10, 8, 16)  # touches b16's right edge
    grads = []
    for windowed in (False, True):
        ws = ws0.clone().requires_grad_(True)
        with torch.enable_grad():
            if windowed:
                f, _ = block_features(G, ws, 16, box)
            else:
                _img, feats = G.synthesis.run(ws, feature_blocks=[16], return_image=False)
                f = feats[16][:, :, box[1] : box[3], box[0] : box[2]]
            (f * torch.linspace(-1, 1, f.numel()).reshape(f.shape)).sum().backward()
        grads.append(ws.grad)
    assert grads[0].abs().max() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_native_round_trip_keeps_the_shape(tmp_path, G):
    save_native(G, tmp_path / "human")
    H = load_native(tmp_path / "human")
    assert (H.img_height, H.img_width) == (32, 16)
    ws = G.ws_from_seed(7, psi=0.7)
    assert torch.equal(H.synthesis(ws), G.synthesis(ws))
