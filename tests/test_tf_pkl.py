"""TensorFlow-era StyleGAN2 network states -> dragkit generator / discriminator (the pure conversion)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dragkit.errors import CheckpointError
from dragkit.formats.tf_pkl import collect_tf_variables, convert_tf_discriminator, convert_tf_generator
from dragkit.nets import Generator
from support.generators import frozen, randomize
from dragkit.nets.discriminator import Discriminator


def _net(name: str, func: str, variables: list, static_kwargs: dict | None = None, components: dict | None = None,
         version: int = 4) -> dict:
    """A recorded ``dnnlib.tflib.network.Network`` state, as its ``__getstate__`` lays it out."""
    return {"version": version, "name": name, "static_kwargs": dict(static_kwargs or {}),
            "components": dict(components or {}), "build_module_src": "raise SystemExit('never run')",
            "build_func_name": func, "variables": list(variables)}


def _f(*shape_or_values, shape=None) -> np.ndarray:
    return np.asarray(shape_or_values if shape is None else shape_or_values[0], dtype=np.float32).reshape(shape or -1)


# --------------------------------------------------------------------------------------------------
# A tiny network in TF layout, its expected PyTorch tensors written out.

TINY_KWARGS = dict(latent_size=3, dlatent_size=2, label_size=0, resolution=8, num_channels=1,
                   fmap_base=4, fmap_max=2, mapping_layers=1, mapping_lrmul=0.5)


def _tiny_tf() -> dict:
    a = lambda n, shape: np.arange(n, dtype=np.float32).reshape(shape)  # noqa: E731
    mapping = _net("G_mapping", "G_mapping", [
        ("Dense0/weight", a(6, (3, 2))), ("Dense0/bias", _f(0.1, 0.2)),
    ], TINY_KWARGS)
    synthesis = _net("G_synthesis", "G_synthesis_stylegan2", [
        ("noise0", a(16, (1, 1, 4, 4)) / 16), ("noise1", a(64, (1, 1, 8, 8)) / 64), ("noise2", -a(64, (1, 1, 8, 8)) / 64),
        ("4x4/Const/const", a(32, (1, 2, 4, 4))),
        ("4x4/Conv/weight", a(36, (3, 3, 2, 2))), ("4x4/Conv/mod_weight", _f([[1, 2], [3, 4]], shape=(2, 2))),
        ("4x4/Conv/mod_bias", _f(0.5, -0.5)), ("4x4/Conv/noise_strength", np.float32(0.75) * np.ones((), np.float32)),
        ("4x4/Conv/bias", _f(0.1, -0.1)),
        ("4x4/ToRGB/weight", _f([7, 8], shape=(1, 1, 2, 1))), ("4x4/ToRGB/mod_weight", _f([[1, 0], [0, 1]], shape=(2, 2))),
        ("4x4/ToRGB/mod_bias", _f(0.0, 0.0)), ("4x4/ToRGB/bias", _f(0.3)),
        ("8x8/Conv0_up/weight", a(18, (3, 3, 2, 1))), ("8x8/Conv0_up/mod_weight", _f([[1, 1], [2, 2]], shape=(2, 2))),
        ("8x8/Conv0_up/mod_bias", _f(0.0, 1.0)), ("8x8/Conv0_up/noise_strength", np.ones((), np.float32)),
        ("8x8/Conv0_up/bias", _f(0.2)),
        ("8x8/Conv1/weight", a(9, (3, 3, 1, 1))), ("8x8/Conv1/mod_weight", _f([[5], [6]], shape=(2, 1))),
        ("8x8/Conv1/mod_bias", _f(-1.0)), ("8x8/Conv1/noise_strength", np.ones((), np.float32) * 2),
        ("8x8/Conv1/bias", _f(0.4)),
        ("8x8/ToRGB/weight", _f([9], shape=(1, 1, 1, 1))), ("8x8/ToRGB/mod_weight", _f([[1], [1]], shape=(2, 1))),
        ("8x8/ToRGB/mod_bias", _f(0.0)), ("8x8/ToRGB/bias", _f(-0.3)),
    ], TINY_KWARGS)
    return _net("Gs", "G_main", [("lod", np.zeros((), np.float32)), ("dlatent_avg", _f(0.25, -0.5))],
                TINY_KWARGS, {"mapping": mapping, "synthesis": synthesis})


def test_tiny_network_maps_to_the_expected_pytorch_tensors():
    kwargs, sd = convert_tf_generator(_tiny_tf())
    assert kwargs["z_dim"] == 3 and kwargs["w_dim"] == 2 and kwargs["img_resolution"] == 8 and kwargs["img_channels"] == 1
    assert kwargs["mapping_kwargs"] == {"num_layers": 1, "lr_multiplier": 0.5, "w_avg_beta": 0.995}
    syn = kwargs["synthesis_kwargs"]
    assert (syn["channel_base"], syn["channel_max"], syn["architecture"], syn["conv_clamp"]) == (8, 2, "skip", None)

    def t(x):
        return torch.tensor(x, dtype=torch.float32)

    expected = {
        "mapping.w_avg": t([0.25, -0.5]),
        "mapping.fc0.weight": t([[0, 2, 4], [1, 3, 5]]),  # [in, out] -> [out, in]
        "mapping.fc0.bias": t([0.1, 0.2]),
        "synthesis.b4.const": torch.arange(32.0).reshape(2, 4, 4),
        # HWIO [3, 3, I=2, O=2] -> OIHW: value at [h, w, i, o] = 4 (3h + w) + 2i + o
        "synthesis.b4.conv1.weight": t([[[[0, 4, 8], [12, 16, 20], [24, 28, 32]], [[2, 6, 10], [14, 18, 22], [26, 30, 34]]],
                                        [[[1, 5, 9], [13, 17, 21], [25, 29, 33]], [[3, 7, 11], [15, 19, 23], [27, 31, 35]]]]),
        "synthesis.b4.conv1.affine.weight": t([[1, 3], [2, 4]]),
        "synthesis.b4.conv1.affine.bias": t([1.5, 0.5]),  # TF adds 1 to the style at run time
        "synthesis.b4.conv1.noise_strength": t(0.75),
        "synthesis.b4.conv1.noise_const": torch.arange(16.0).reshape(4, 4) / 16,
        "synthesis.b4.conv1.bias": t([0.1, -0.1]),
        "synthesis.b4.torgb.weight": t([[[[7]], [[8]]]]),
        "synthesis.b4.torgb.affine.bias": t([1.0, 1.0]),
        # the up-sampling conv is flipped in space: value at [2 - h, 2 - w, i, 0] = 2 (3 (2 - h) + 2 - w) + i
        "synthesis.b8.conv0.weight": t([[[[16, 14, 12], [10, 8, 6], [4, 2, 0]], [[17, 15, 13], [11, 9, 7], [5, 3, 1]]]]),
        "synthesis.b8.conv0.affine.weight": t([[1, 2], [1, 2]]),
        "synthesis.b8.conv0.affine.bias": t([1.0, 2.0]),
        "synthesis.b8.conv0.noise_const": torch.arange(64.0).reshape(8, 8) / 64,  # noise1
        "synthesis.b8.conv1.weight": t([[[[0, 1, 2], [3, 4, 5], [6, 7, 8]]]]),
        "synthesis.b8.conv1.affine.weight": t([[5, 6]]),
        "synthesis.b8.conv1.affine.bias": t([0.0]),
        "synthesis.b8.conv1.noise_const": -torch.arange(64.0).reshape(8, 8) / 64,  # noise2
        "synthesis.b8.conv1.noise_strength": t(2.0),
        "synthesis.b8.torgb.weight": t([[[[9]]]]),
        "synthesis.b8.torgb.bias": t([-0.3]),
    }
    for name, value in expected.items():
        assert torch.equal(sd[name], value), name
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    assert torch.equal(sd["synthesis.b8.conv0.resample_filter"], torch.outer(f, f) / 64)
    G = Generator(**kwargs)
    G.load_state_dict(sd, strict=True)
    assert G(torch.ones(1, 3)).shape == (1, 1, 8, 8)


def test_variables_are_collected_with_component_prefixes():
    names = set(collect_tf_variables(_tiny_tf()))
    assert {"lod", "dlatent_avg", "mapping/Dense0/weight", "synthesis/noise0", "synthesis/8x8/ToRGB/bias"} <= names


# --------------------------------------------------------------------------------------------------
# Round trip: random dragkit generator -> TF layout (the inverse mapping, below) -> converter.


def _hwio(w: torch.Tensor, flip: bool = False) -> np.ndarray:
    x = w.detach().permute(2, 3, 1, 0).numpy()  # OIHW -> HWIO
    return np.ascontiguousarray(x[::-1, ::-1] if flip else x)


def _to_tf_generator(G: Generator, *, progressive: bool = False, ada: bool = False) -> dict:
    """The inverse of NVIDIA's TF -> PyTorch mapping, written independently of the converter."""
    sd = {k: v.detach() for k, v in G.state_dict().items()}
    syn_kw = G.init_kwargs["synthesis_kwargs"]
    map_kw = G.init_kwargs["mapping_kwargs"]
    res = G.img_resolution
    static = dict(latent_size=G.z_dim, label_size=G.c_dim, dlatent_size=G.w_dim, resolution=res,
                  num_channels=G.img_channels, fmap_base=syn_kw["channel_base"] // 2, fmap_max=syn_kw["channel_max"],
                  mapping_layers=map_kw["num_layers"], mapping_lrmul=G.mapping.fc0.bias_gain,
                  truncation_psi=0.5, style_mixing_prob=0.9)
    if progressive:
        static["synthesis_func"] = "G_synthesis_stylegan_revised"
    else:
        static["architecture"] = syn_kw.get("architecture", "skip")
    if G.c_dim:
        static["label_fmaps"] = G.mapping.embed.out_features
    mapping = []
    for i in range(G.mapping.num_layers):
        mapping += [(f"Dense{i}/weight", sd[f"mapping.fc{i}.weight"].t().numpy()), (f"Dense{i}/bias", sd[f"mapping.fc{i}.bias"].numpy())]
    if G.c_dim:
        mapping += [("LabelEmbed/weight", sd["mapping.embed.weight"].t().numpy()), ("LabelEmbed/bias", sd["mapping.embed.bias"].numpy())]
    synthesis = [("4x4/Const/const", sd["synthesis.b4.const"][None].numpy())]
    noise = 0
    for r in G.synthesis.block_resolutions:
        b = f"synthesis.b{r}"
        convs = [("conv1", "Conv")] if r == 4 else [("conv0", "Conv0_up"), ("conv1", "Conv1")]
        for layer, scope in convs:
            p = f"{b}.{layer}"
            synthesis += [
                (f"{r}x{r}/{scope}/weight", _hwio(sd[f"{p}.weight"], flip=layer == "conv0")),
                (f"{r}x{r}/{scope}/mod_weight", sd[f"{p}.affine.weight"].t().numpy()),
                (f"{r}x{r}/{scope}/mod_bias", (sd[f"{p}.affine.bias"] - 1).numpy()),
                (f"{r}x{r}/{scope}/noise_strength", sd[f"{p}.noise_strength"].numpy()),
                (f"{r}x{r}/{scope}/bias", sd[f"{p}.bias"].numpy()),
                (f"noise{noise}", sd[f"{p}.noise_const"][None, None].numpy()),
            ]
            noise += 1
        if f"{b}.skip.weight" in sd:
            synthesis.append((f"{r}x{r}/Skip/weight", _hwio(sd[f"{b}.skip.weight"], flip=True)))
        if f"{b}.torgb.weight" in sd:
            scope = "ToRGB_lod0" if progressive else f"{r}x{r}/ToRGB"
            synthesis += [
                (f"{scope}/weight", _hwio(sd[f"{b}.torgb.weight"])),
                (f"{scope}/mod_weight", sd[f"{b}.torgb.affine.weight"].t().numpy()),
                (f"{scope}/mod_bias", (sd[f"{b}.torgb.affine.bias"] - 1).numpy()),
                (f"{scope}/bias", sd[f"{b}.torgb.bias"].numpy()),
            ]
    g_vars = [("lod", np.zeros((), np.float32)), ("dlatent_avg", sd["mapping.w_avg"].numpy())]
    if progressive:  # the lower-resolution outputs of a grown network, faded out at lod 0
        rng = np.random.RandomState(0)
        c = sd[f"synthesis.b{res // 2}.conv1.weight"].shape[0]
        synthesis += [("ToRGB_lod1/weight", rng.randn(1, 1, c, G.img_channels).astype(np.float32)),
                      ("ToRGB_lod1/mod_weight", rng.randn(G.w_dim, c).astype(np.float32)),
                      ("ToRGB_lod1/mod_bias", np.zeros(c, np.float32)),
                      ("ToRGB_lod1/bias", np.zeros(G.img_channels, np.float32)),
                      ("lod", np.zeros((), np.float32))]
    version = 5 if ada else 4
    synth_func = "G_synthesis_stylegan_revised" if progressive else ("G_synthesis" if ada else "G_synthesis_stylegan2")
    return _net("Gs", "G_main", g_vars, static, {
        "mapping": _net("G_mapping", "G_mapping", mapping, static, version=version),
        "synthesis": _net("G_synthesis", synth_func, synthesis, static, version=version),
    }, version=version)


def _random_generator(arch: str, c_dim: int = 0, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    G = Generator(8, c_dim, 6, 16, 3, mapping_kwargs={"num_layers": 2, "lr_multiplier": 0.01},
                  synthesis_kwargs={"channel_base": 128, "channel_max": 8, "architecture": arch})
    return frozen(randomize(G, seed + 1))


@pytest.mark.parametrize("arch,c_dim,progressive,ada", [
    ("skip", 0, False, False), ("resnet", 0, False, False), ("orig", 0, False, False),
    ("skip", 3, False, True), ("orig", 0, True, False),
])
def test_round_trip_renders_identical_images(arch, c_dim, progressive, ada):
    G = _random_generator(arch, c_dim)
    kwargs, sd = convert_tf_generator(_to_tf_generator(G, progressive=progressive, ada=ada))
    assert kwargs["synthesis_kwargs"]["architecture"] == arch
    H = Generator(**kwargs).eval()
    H.load_state_dict(sd, strict=True)
    own = G.state_dict()
    for name, value in sd.items():  # exact, but for the affine biases' - 1 + 1 in float32
        tol = 1e-6 if name.endswith("affine.bias") else 0
        assert torch.allclose(value, own[name], atol=tol, rtol=0), name
    for seed in (0, 1):
        z = G.z_from_seed(seed)
        c = torch.eye(c_dim)[seed % c_dim][None] if c_dim else None
        a = G(z, c, truncation_psi=0.7)
        b = H(z, c, truncation_psi=0.7)
        assert (a - b).abs().max() < 1e-5


def test_build_module_src_is_never_run(tmp_path):
    sentinel = tmp_path / "ran"
    state = _tiny_tf()
    state["build_module_src"] = f"open({str(sentinel)!r}, 'w').write('pwned')"
    state["components"]["synthesis"]["build_module_src"] = state["build_module_src"]
    convert_tf_generator(state)
    assert not sentinel.exists()


# --------------------------------------------------------------------------------------------------
# Discriminator.


def _to_tf_discriminator(D: Discriminator, func: str = "D_stylegan2", **extra) -> dict:
    sd = {k: v.detach() for k, v in D.state_dict().items()}
    kw = D.init_kwargs
    static = dict(num_channels=kw["img_channels"], resolution=kw["img_resolution"], label_size=0,
                  fmap_base=kw["channel_base"] // 2, fmap_max=kw["channel_max"], **extra)
    variables = []
    for name, value in sd.items():
        parts = name.split(".")
        if parts[0] == "b4":
            scope = {"conv": "4x4/Conv", "fc": "4x4/Dense0", "out": "Output"}[parts[1]]
            v = value.permute(2, 3, 1, 0).numpy() if value.ndim == 4 else (value.t().numpy() if value.ndim == 2 else value.numpy())
        else:
            r = parts[0][1:]
            scope = f"{r}x{r}/" + {"fromrgb": "FromRGB", "conv0": "Conv0", "conv1": "Conv1_down", "skip": "Skip"}[parts[1]]
            v = value.permute(2, 3, 1, 0).numpy() if value.ndim == 4 else value.numpy()
        variables.append((f"{scope}/{parts[2]}", np.ascontiguousarray(v)))
    return _net("D", func, variables, static)


def test_discriminator_round_trip_gives_identical_logits():
    torch.manual_seed(0)
    D = Discriminator(16, 3, channel_base=128, channel_max=8, conv_clamp=None).eval()
    with torch.no_grad():
        for name, p in D.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape) * 0.3)
    kwargs, sd = convert_tf_discriminator(_to_tf_discriminator(D))
    assert kwargs["mbstd_group_size"] == 4 and kwargs["conv_clamp"] is None  # D_stylegan2's defaults
    E = Discriminator(**kwargs).eval()
    E.load_state_dict(sd, strict=True)
    imgs = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(D(imgs), E(imgs))


# --------------------------------------------------------------------------------------------------
# Refusals: one clear error each.


def _tiny_with(change) -> dict:
    state = _tiny_tf()
    change(state)
    return state


def _drop(state: dict, comp: str, name: str) -> None:
    state["components"][comp]["variables"] = [(n, v) for n, v in state["components"][comp]["variables"] if n != name]


@pytest.mark.parametrize("change,message", [
    (lambda s: s["static_kwargs"].update(fancy_option=1), "unknown TensorFlow kwarg 'fancy_option'"),
    (lambda s: s.update(build_func_name="G_style"), "original StyleGAN"),
    (lambda s: s.update(version=3), "version 3"),
    (lambda s: s["static_kwargs"].update(nonlinearity="relu"), "leaky ReLU"),
    (lambda s: s["static_kwargs"].update(fmap_decay=0.5), "fmap_decay"),
    (lambda s: _drop(s, "synthesis", "8x8/Conv1/weight"), "missing TensorFlow variable 'synthesis/8x8/Conv1/weight'"),
    (lambda s: s["components"]["synthesis"]["variables"].append(("8x8/Extra/weight", np.zeros(2, np.float32))),
     "unexpected TensorFlow variable 'synthesis/8x8/Extra/weight'"),
    (lambda s: s["components"]["mapping"]["variables"].__setitem__(0, ("Dense0/weight", np.zeros((2, 3), np.float32))),
     "'mapping/Dense0/weight' gives mapping.fc0.weight the shape"),
    (lambda s: s["components"]["mapping"]["variables"].__setitem__(1, ("Dense0/bias", np.array(["x", "y"], dtype=object))),
     "not a floating-point array"),
    (lambda s: s["components"]["mapping"]["variables"].append(("Dense0/bias", np.zeros(2, np.float32))), "appears twice"),
    (lambda s: s["components"].pop("synthesis"), "no 'synthesis' component"),
])
def test_bad_generators_are_refused_with_one_clear_error(change, message):
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        convert_tf_generator(_tiny_with(change), "cat.pkl")


def test_original_stylegan2_conditional_generator_is_refused():
    state = _tiny_with(lambda s: s["static_kwargs"].update(label_size=2))
    state["components"]["mapping"]["variables"].append(("LabelConcat/weight", np.zeros((2, 3), np.float32)))
    with pytest.raises(CheckpointError, match="LabelConcat"):
        convert_tf_generator(state)


def test_progressive_network_mid_growth_is_refused():
    G = _random_generator("orig")
    state = _to_tf_generator(G, progressive=True)
    state["variables"][0] = ("lod", np.full((), 0.5, np.float32))
    with pytest.raises(CheckpointError, match="mid-growth"):
        convert_tf_generator(state)


@pytest.mark.parametrize("func,extra,message", [
    ("D_stylegan", {}, "progressive-growing discriminator"),
    ("D_stylegan2", {"architecture": "skip"}, "only the resnet discriminator"),
    ("D_stylegan2", {"use_spectral_norm": True}, "spectral normalisation"),
    ("D_main", {}, "whole batch"),
])
def test_unsupported_discriminators_are_refused(func, extra, message):
    torch.manual_seed(0)
    D = Discriminator(16, 3, channel_base=128, channel_max=8)
    with pytest.raises(CheckpointError, match=message):
        convert_tf_discriminator(_to_tf_discriminator(D, func, **extra))
    state = _to_tf_discriminator(D)
    state["static_kwargs"]["label_size"] = 4
    with pytest.raises(CheckpointError, match="class-conditional"):
        convert_tf_discriminator(state)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -float("inf"), 1e400])
def test_non_finite_integer_kwargs_are_one_clear_error(value):
    """Found by the fuzzer: int(inf) raised OverflowError out of the converter."""
    with pytest.raises(CheckpointError, match="is not an integer"):
        convert_tf_generator(_tiny_with(lambda s: s["static_kwargs"].update(resolution=value)), "cat.pkl")
