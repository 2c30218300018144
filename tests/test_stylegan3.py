"""The StyleGAN3 generator: NVIDIA's layout, filters from the checkpoint, layer features, geometry."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dragkit.nets.ops import fir_resample
from dragkit.nets.stylegan3 import Generator, SynthesisLayer, design_lowpass_filter
from support.generators import randomize_stylegan3

W_DIM = 8


def _make(seed: int = 0, **kwargs) -> Generator:
    torch.manual_seed(seed)
    kw = dict(channel_base=512, channel_max=16, num_layers=6)
    kw.update(kwargs)
    G = Generator(W_DIM, 0, W_DIM, 32, 3, **kw)
    randomize_stylegan3(G, seed)
    return G.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def G_T() -> Generator:
    return _make(0)


@pytest.fixture(scope="module")
def G_R() -> Generator:
    return _make(1, conv_kernel=1, use_radial_filters=True, channel_base=1024, channel_max=32)


# NVIDIA's networks_stylegan3.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
# channel_base=256, channel_max=16, num_layers=4, mapping_kwargs={'num_layers': 2}) state dict, as
# NVIDIA's code lays it out (printed from it once); the R variant (conv_kernel=1,
# use_radial_filters=True) differs in the conv kernels and the radial (2-D) down filters of L0, L1.
def _nvidia_layout(radial: bool) -> dict[str, tuple[int, ...]]:
    k = 1 if radial else 3
    out = {
        "synthesis.input.weight": (16, 16), "synthesis.input.transform": (3, 3),
        "synthesis.input.freqs": (16, 2), "synthesis.input.phases": (16,),
        "synthesis.input.affine.weight": (4, 8), "synthesis.input.affine.bias": (4,),
    }
    for name in ("L0_36_16", "L1_36_16", "L2_36_16", "L3_16_16"):
        out.update({
            f"synthesis.{name}.weight": (16, 16, k, k), f"synthesis.{name}.bias": (16,),
            f"synthesis.{name}.magnitude_ema": (), f"synthesis.{name}.up_filter": (12,),
            f"synthesis.{name}.down_filter": (12, 12) if radial and name in ("L0_36_16", "L1_36_16") else (12,),
            f"synthesis.{name}.affine.weight": (16, 8), f"synthesis.{name}.affine.bias": (16,),
        })
    out.update({  # ToRGB: identity filters, so no filter buffers
        "synthesis.L4_16_3.weight": (3, 16, 1, 1), "synthesis.L4_16_3.bias": (3,),
        "synthesis.L4_16_3.magnitude_ema": (), "synthesis.L4_16_3.affine.weight": (16, 8),
        "synthesis.L4_16_3.affine.bias": (16,),
        "mapping.w_avg": (8,), "mapping.fc0.weight": (8, 8), "mapping.fc0.bias": (8,),
        "mapping.fc1.weight": (8, 8), "mapping.fc1.bias": (8,),
    })
    return out


@pytest.mark.parametrize("radial", [False, True])
def test_state_dict_has_nvidias_names_and_shapes(radial):
    extra = dict(conv_kernel=1, use_radial_filters=True) if radial else {}
    G = Generator(8, 0, 8, 16, 3, mapping_kwargs={"num_layers": 2}, channel_base=256, channel_max=16,
                  num_layers=4, **extra)
    got = {k: tuple(v.shape) for k, v in G.state_dict().items()}
    assert got == _nvidia_layout(radial)
    assert G.num_ws == 6 and G.synthesis.layer_names == ["L0_36_16", "L1_36_16", "L2_36_16", "L3_16_16", "L4_16_3"]


def test_designed_filters_are_scipys_kaiser_designs():
    """The filters a fresh generator designs (values from scipy.signal.firwin and NVIDIA's radial design)."""
    f = design_lowpass_filter(12, cutoff=2.0, width=12.0, fs=32)
    firwin = [0.0007919, 0.01001832, 0.03894952, 0.09241279, 0.15652562, 0.20130185]
    assert torch.allclose(f, torch.tensor(firwin + firwin[::-1]), atol=1e-7)
    g = design_lowpass_filter(24, cutoff=3.5, width=10.4, fs=64)
    assert torch.allclose(g[:4], torch.tensor([-0.00038113, -0.00077726, -0.0004811, 0.00165591]), atol=1e-7)
    r = design_lowpass_filter(12, cutoff=2.0, width=12.0, fs=32, radial=True)
    assert r.shape == (12, 12) and abs(r.sum().item() - 1) < 1e-6
    assert r[5, 5].item() == pytest.approx(0.03875488415, rel=1e-5)
    assert r[2, 7].item() == pytest.approx(0.00643650675, rel=1e-5)
    assert design_lowpass_filter(1, 2.0, 1.0, 32) is None


def test_output_contract_seed_and_truncation(G_T):
    img = G_T(G_T.z_from_seed(0), None, truncation_psi=0.7)
    assert img.shape == (1, 3, 32, 32) and torch.isfinite(img).all()
    assert (G_T.img_height, G_T.img_width, G_T.num_ws) == (32, 32, 8)
    assert torch.equal(G_T.z_from_seed(5), torch.from_numpy(np.random.RandomState(5).randn(1, W_DIM)).float())
    ws = G_T.ws_from_seed(3, psi=0.0)
    assert torch.allclose(ws, G_T.mapping.w_avg.expand_as(ws))
    a = G_T.synthesis(G_T.ws_from_seed(1, psi=0.7))
    b = G_T.synthesis(G_T.ws_from_seed(2, psi=0.7))
    assert (a - b).abs().max() > 0.05


def test_batch_matches_single_samples(G_R):
    ws = torch.cat([G_R.ws_from_seed(s, psi=0.7) for s in (1, 2, 3)])
    batch = G_R.synthesis(ws)
    single = torch.cat([G_R.synthesis(ws[i : i + 1]) for i in range(3)])
    assert torch.allclose(batch, single, atol=1e-5)


@pytest.mark.parametrize("which", ["T", "R"])
def test_state_dict_round_trip_renders_the_same_image(which, G_T, G_R):
    src = G_T if which == "T" else G_R
    dst = Generator(**src.init_kwargs).eval()
    dst.load_state_dict(src.state_dict(), strict=True)
    ws = src.ws_from_seed(4, psi=0.7)
    assert torch.equal(dst.synthesis(ws), src.synthesis(ws))


def test_filters_come_from_the_checkpoint_buffers(G_T):
    """A checkpoint's filter buffer is what the layer applies: change it and the image changes."""
    state = {k: v.clone() for k, v in G_T.state_dict().items()}
    name = G_T.synthesis.layer_names[2]
    state[f"synthesis.{name}.down_filter"] = torch.flip(state[f"synthesis.{name}.down_filter"], [0]).roll(1)
    G2 = Generator(**G_T.init_kwargs).eval()
    G2.load_state_dict(state, strict=True)
    ws = G_T.ws_from_seed(0, psi=0.7)
    assert (G2.synthesis(ws) - G_T.synthesis(ws)).abs().max() > 1e-3
    assert torch.equal(G2.synthesis.layer(2).down_filter, state[f"synthesis.{name}.down_filter"])


def test_feature_run_matches_full_run_and_stops_early(G_T):
    ws = G_T.ws_from_seed(5, psi=0.7)
    img_full, feats_full = G_T.synthesis.run(ws, feature_layers=[1, 3])
    ran: list[str] = []
    hooks = [G_T.synthesis.layer(i).register_forward_hook(lambda m, i_, o, n=n: ran.append(n))
             for i, n in enumerate(G_T.synthesis.layer_names)]
    try:
        img, feats = G_T.synthesis.run(ws, feature_layers=[3], return_image=False)
    finally:
        for h in hooks:
            h.remove()
    assert img is None and list(feats) == [3]
    assert ran == G_T.synthesis.layer_names[:4]  # no later layer ran
    geo = G_T.synthesis.layer_geometry(3)
    assert feats[3].shape == (1, geo.channels, geo.size, geo.size)
    assert torch.equal(feats[3], feats_full[3]) and torch.equal(img_full, G_T.synthesis(ws))
    with pytest.raises(ValueError, match="no synthesis layer"):
        G_T.synthesis.run(ws, feature_layers=[99])
    with pytest.raises(ValueError, match="ws must have shape"):
        G_T.synthesis(torch.zeros(1, 3, W_DIM))


def test_feature_gradients_reach_only_the_codes_before_the_layer(G_T):
    ws = G_T.ws_from_seed(2).clone().requires_grad_(True)
    with torch.enable_grad():
        _, feats = G_T.synthesis.run(ws, feature_layers=[3], return_image=False)
        feats[3].square().mean().backward()
    # code 0 drives the input, code i + 1 layer i: layer 3 reads codes 0..4
    assert (ws.grad[0, :5].abs().sum(-1) > 0).all()
    assert ws.grad[0, 5:].abs().sum() == 0


def test_conditional_generator_needs_c():
    torch.manual_seed(0)
    G = Generator(8, 3, 8, 16, 3, channel_base=256, channel_max=8, num_layers=4).eval()
    z = G.z_from_seed(0)
    assert not torch.equal(G(z, torch.eye(3)[:1]), G(z, torch.eye(3)[1:2]))
    with pytest.raises(ValueError, match="conditional"):
        G(z, None)


def test_unknown_mapping_argument_is_refused():
    with pytest.raises(ValueError, match="mapping argument"):
        Generator(8, 0, 8, 16, 3, mapping_kwargs={"layer_features": 4}, num_layers=4)


# -- geometry ---------------------------------------------------------------------------------------


def _cosine(size: int, rate: float, shift: float = 0.0) -> torch.Tensor:
    """``cos(2 pi (a x + b y) + phi)`` sampled on a ``size``-pixel map of ``rate`` samples per image width,
    pixel j at ``(j + 0.5 + shift - size / 2) / rate`` image widths from the image centre."""
    p = (torch.arange(size, dtype=torch.float64) + 0.5 + shift - size / 2) / rate
    py, px = torch.meshgrid(p, p, indexing="ij")
    return torch.cos(2 * math.pi * (0.6 * px - 0.35 * py) + 0.3)


def _phase_residual(y: torch.Tensor, expected: torch.Tensor, border: int) -> float:
    """Max residual of ``y`` after fitting only an amplitude to ``expected`` (filters are zero-phase)."""
    s = slice(border, y.shape[0] - border)
    yc, ec = y[s, s], expected[s, s]
    amp = (yc * ec).sum() / (ec * ec).sum()
    return (yc - amp * ec).abs().max().item()


@pytest.mark.parametrize("which", ["T", "R"])
def test_each_layer_keeps_samples_where_the_geometry_says(which, G_T, G_R):
    """A band-limited signal sampled at the documented input positions comes out of every layer at the
    documented output positions (up to a gain): pixel j of a map of S px at s samples per image width
    lies at (j + 0.5 - S/2) / s image widths from the centre.  Half a pixel off, or the map stretched
    over the image as DragGAN's resize does, is far off."""
    G = G_T if which == "T" else G_R
    syn = G.synthesis
    for i in range(syn.num_layers):  # every layer but ToRGB
        L = syn.layer(i)
        one = SynthesisLayer(W_DIM, False, L.is_critically_sampled, 1, 1, L.in_size, L.out_size,
                             L.in_sampling_rate, L.out_sampling_rate, L.in_cutoff, L.out_cutoff,
                             L.in_half_width, L.out_half_width, conv_kernel=L.conv_kernel,
                             use_radial_filters=L.down_radial, conv_clamp=None)
        with torch.no_grad():  # one channel, identity conv, unit style: the layer is its filters
            one.weight.zero_()
            one.weight[0, 0, L.conv_kernel // 2, L.conv_kernel // 2] = 1
            one.affine.weight.zero_()
            one.affine.bias.fill_(1)
            one.up_filter, one.down_filter = L.up_filter, L.down_filter
        x = (2 + _cosine(L.in_size, L.in_sampling_rate)).float()[None, None]  # positive: the lrelu is linear
        y = one(x, torch.zeros(1, W_DIM))[0, 0].double() / math.sqrt(2) - 2
        # Away from the map's edges (zero padding), unless the layer crops its margin away.
        border = 0 if L.out_size == L.out_sampling_rate else 4 + 3 * L.out_sampling_rate // L.in_sampling_rate
        rate = L.out_sampling_rate
        assert _phase_residual(y, _cosine(L.out_size, rate), border) < 1e-3, L
        assert _phase_residual(y, _cosine(L.out_size, rate, shift=0.5), border) > 0.02, L
        if L.out_size != rate:
            assert _phase_residual(y, _cosine(L.out_size, L.out_size), border) > 0.3, L


def test_input_features_are_sampled_at_the_documented_positions(G_T):
    inp = G_T.synthesis.input
    with torch.no_grad():
        w = torch.randn(1, W_DIM)
        saved = inp.affine.weight.clone(), inp.affine.bias.clone(), inp.weight.clone()
        inp.affine.weight.zero_()
        inp.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        inp.weight.copy_(torch.eye(inp.channels) * math.sqrt(inp.channels))
        try:
            x = inp(w)[0]
        finally:
            inp.affine.weight.copy_(saved[0]), inp.affine.bias.copy_(saved[1]), inp.weight.copy_(saved[2])
    p = (torch.arange(inp.size) + 0.5 - inp.size / 2) / inp.sampling_rate
    py, px = torch.meshgrid(p, p, indexing="ij")
    for c in (0, 5, inp.channels - 1):
        fx, fy = inp.freqs[c]
        expected = torch.sin(2 * math.pi * (fx * px + fy * py + inp.phases[c]))
        assert torch.allclose(x[c], expected, atol=1e-5)


def test_layer_geometry_maps_image_pixels(G_T):
    syn = G_T.synthesis
    geo = syn.layer_geometry(3)
    assert (geo.size, geo.sampling_rate, geo.margin) == (52, 32, 10)
    p = torch.tensor([0.0, 7.5, 31.0])
    assert torch.allclose(geo.layer_to_image(geo.image_to_layer(p)), p)
    assert geo.image_to_layer(0.0) == pytest.approx(10.0)  # image pixel 0 is map pixel 10 (margin)
    last = syn.layer_geometry(syn.num_layers - 1)
    assert last.margin == 0 and last.image_to_layer(13.0) == pytest.approx(13.0)
    low = syn.layer_geometry(0)  # 16 samples per width on a 32 px image: half resolution plus margin
    assert low.image_to_layer(1.0) == pytest.approx((1.5 * 16 / 32 - 0.5) + 10)
    with pytest.raises(ValueError, match="no synthesis layer"):
        syn.layer_geometry(syn.num_layers + 1)


def test_fir_resample_is_the_zero_insertion_reference():
    """The polyphase / strided FIR equals zero insertion + padding + full convolution + decimation."""
    torch.manual_seed(0)

    def reference(x, f, up, down, pad):
        n, c, h, w = x.shape
        z = torch.zeros(n, c, h * up, w * up, dtype=x.dtype)
        z[:, :, ::up, ::up] = x
        px0, px1, py0, py1 = pad
        z = torch.nn.functional.pad(z, [px0, px1, py0, py1])
        k = f if f.ndim == 2 else torch.outer(f, f)
        k = (k * up * up).flip([0, 1])[None, None].repeat(c, 1, 1, 1)
        return torch.nn.functional.conv2d(z, k, groups=c)[:, :, ::down, ::down]

    x = torch.randn(2, 3, 21, 19, dtype=torch.float64)
    for up, down, taps, pad in [(2, 1, 12, (9, 8, 9, 8)), (4, 1, 24, (-6, -9, -6, -9)), (3, 1, 7, (2, 5, -1, 3)),
                                (1, 2, 12, (0, 0, 0, 0)), (1, 2, 12, (3, -2, 1, 4))]:
        f = torch.randn(taps, dtype=torch.float64)
        assert torch.allclose(fir_resample(x, f, up=up, down=down, padding=pad, gain=up * up),
                              reference(x, f, up, down, pad), atol=1e-10)
        f2 = torch.randn(taps, taps, dtype=torch.float64)
        assert torch.allclose(fir_resample(x, f2, up=up, down=down, padding=pad, gain=up * up),
                              reference(x, f2, up, down, pad), atol=1e-10)


def test_update_emas_tracks_the_input_magnitude():
    G = _make(2, magnitude_ema_beta=0.9)
    layer = G.synthesis.layer(0)
    ws = G.ws_from_seed(1, psi=0.7)
    before = layer.magnitude_ema.clone()
    x_in = G.synthesis.input(ws[:, 0])
    img_frozen = G.synthesis(ws)
    G.synthesis(ws, update_emas=True)
    expected = x_in.square().mean().lerp(before, 0.9)
    assert torch.allclose(layer.magnitude_ema, expected)
    assert not torch.equal(G.synthesis(ws), img_frozen)  # the input gain follows the average
