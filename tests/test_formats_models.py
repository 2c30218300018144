"""Every model the DragGAN world uses, as files built in their real layouts inside the test.

StyleGAN2-ADA snapshots in each layout the authors' and the pip ``draggan``
lists use (conditional, 1024 px, fp16 blocks with channels-last weights,
the stylegan3 code base's flat kwargs, NVIDIA's legacy-converter kwargs),
StyleGAN-Human's non-square pickles (``square`` recorded as a keyword, as
the fifth positional argument, or not at all), StyleGAN3 (configs T and R)
snapshots, and TensorFlow-era ``(G, D, Gs)`` pickles.  Each one loads
through the restricted unpickler without running anything from the file
(the stand-ins' embedded source writes a sentinel when executed) and
renders what the network it came from renders.  Stand-in modules and
builders: ``tests/formats_layouts.py``.
"""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from dragkit.cli import main as dragkit_main
from dragkit.errors import CheckpointError
from dragkit.formats import load_checkpoint, load_discriminator, load_native, save_native
from dragkit.formats.info import checkpoint_info, stylegan3_feature_maps
from dragkit.formats.nvidia_pkl import infer_init_kwargs, read_nvidia_pkl
from dragkit.nets import Generator, StyleGAN3Generator
from dragkit.nets.discriminator import Discriminator

from formats_layouts import (  # noqa: F401 - standins is a fixture
    random_stylegan2,
    random_stylegan3,
    render,
    standins,
    stylegan2_snapshot,
    stylegan3_snapshot,
    tf_networks,
    tf_pickle,
    write_pickle,
)
from test_tf_pkl import _random_generator, _tiny_tf, _to_tf_discriminator, _to_tf_generator


# --------------------------------------------------------------------------------------------------
# StyleGAN2-ADA PyTorch pickles: the layouts of the authors' and the pip draggan lists.

LAYOUTS = {
    # what the file is like -> (generator kwargs, snapshot kwargs)
    "AFHQ/FFHQ-style ada snapshot, class-conditional (c_dim 4)": (dict(c_dim=4), dict(layout="ada")),
    "1024 px (FFHQ, MetFaces, dogs_1024)": (dict(res=1024, channel_base=2048, channel_max=4), dict(layout="ada")),
    "fp16 blocks, channels-last weights": (dict(res=32, conv_clamp=256), dict(layout="ada", fp16=True, channels_last=True)),
    "stylegan3 code base networks_stylegan2 (flat kwargs, fp16)": (dict(res=32), dict(layout="sg3", fp16=True)),
    "legacy.py-converted (self-distilled *_pytorch.pkl, NGC stylegan2-*)": (dict(res=32), dict(layout="legacy")),
    "resnet architecture, 4 mapping layers": (dict(architecture="resnet", num_layers=4), dict(layout="ada")),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_stylegan2_ada_layouts_load_and_render_like_their_source(standins, tmp_path, name):
    gkw, skw = LAYOUTS[name]
    G = random_stylegan2(**gkw)
    snap = stylegan2_snapshot(standins, G, **skw)
    path = write_pickle(tmp_path / "network-snapshot.pkl", snap)
    G2 = load_checkpoint(path)
    assert type(G2) is Generator and G2.dragkit_metadata["source_format"] == "nvidia-pkl"
    assert (G2.img_height, G2.img_width, G2.c_dim) == (G.img_height, G.img_width, G.c_dim)
    assert torch.equal(render(G2), render(G))
    if G.c_dim:
        assert not torch.equal(render(G2, label=0), render(G2, label=1))  # the label matters
    assert not standins.ran()
    if skw.get("channels_last"):  # the file really stores non-contiguous strides
        rec = read_nvidia_pkl(path)["G_ema"]
        w = rec.state["_modules"]["synthesis"].state["_modules"]["b32"].state["_modules"]["conv0"].state["_parameters"]["weight"]
        assert not w.is_contiguous() and w.is_contiguous(memory_format=torch.channels_last)


def test_stand_ins_really_run_the_embedded_source_under_plain_pickle(standins, tmp_path):
    """Control: the sentinel mechanism works, so the loads above could fail."""
    G = random_stylegan2()
    pickle.loads(pickle.dumps(stylegan2_snapshot(standins, G)))
    assert standins.sentinel.exists()
    standins.sentinel.unlink()
    pickle.loads(tf_pickle(standins, _tiny_tf(), _tiny_tf()))
    assert standins.sentinel.exists() and "Network.__setstate__" in standins.calls


# --------------------------------------------------------------------------------------------------
# StyleGAN-Human: non-square StyleGAN2, decided from the b4.const shape.


@pytest.mark.parametrize("layout", ["human", "human-args", "human-unrecorded"])
def test_stylegan_human_pickles_render_their_native_h_by_half_h_image(standins, tmp_path, layout):
    G = random_stylegan2(res=32, square=False, conv_clamp=256)
    path = write_pickle(tmp_path / "stylegan_human_v2_512.pkl", stylegan2_snapshot(standins, G, layout, fp16=True))
    G2 = load_checkpoint(path)
    img = render(G2)
    assert img.shape == (1, 3, 32, 16) and (G2.img_height, G2.img_width) == (32, 16)
    assert G2.init_kwargs["synthesis_kwargs"]["square"] is False
    assert torch.equal(img, render(G))
    assert not standins.ran()


@pytest.mark.parametrize("square_G,recorded", [(True, False), (False, True)])
def test_recorded_square_disagreeing_with_the_shapes_is_one_clear_error(standins, tmp_path, square_G, recorded):
    G = random_stylegan2(res=32, square=square_G)
    snap = stylegan2_snapshot(standins, G, "human")
    for key in ("G", "G_ema"):
        snap[key].state["_init_kwargs"]["square"] = recorded
        snap[key].state["square"] = recorded
        snap[key].sub("synthesis").state["square"] = recorded
    path = write_pickle(tmp_path / "bad.pkl", snap)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert f"says square={recorded}" in msg and "synthesis.b4.const" in msg and "\n" not in msg


def test_infer_init_kwargs_learns_the_square_flag():
    for square in (True, False):
        G = random_stylegan2(res=32, square=square, architecture="resnet")
        kw = infer_init_kwargs(G.state_dict())
        assert kw["synthesis_kwargs"].get("square", True) is square
        G2 = Generator(**kw)
        assert {k: v.shape for k, v in G2.state_dict().items()} == {k: v.shape for k, v in G.state_dict().items()}
    bad = dict(random_stylegan2().state_dict())
    bad["synthesis.b4.const"] = torch.zeros(16, 4, 3)
    with pytest.raises(CheckpointError, match=r"\[16, 4, 3\].*\[C, 4, 2\]"):
        infer_init_kwargs(bad)


def test_non_square_state_dict_pt_and_native_round_trip(tmp_path):
    G = random_stylegan2(res=32, square=False)
    torch.save(G.state_dict(), tmp_path / "human.pt")
    G2 = load_checkpoint(tmp_path / "human.pt")
    assert torch.equal(render(G2), render(G)) and G2.img_width == 16
    save_native(G2, tmp_path / "human")
    assert torch.equal(render(load_native(tmp_path / "human")), render(G))


def test_non_square_discriminator_is_refused_clearly(standins, tmp_path):
    G = random_stylegan2(res=32, square=False)
    snap = stylegan2_snapshot(standins, G, "human")
    snap["D"].state["_init_kwargs"] = {"c_dim": 0, "img_resolution": 32, "img_channels": 3, "square": False}
    path = write_pickle(tmp_path / "human.pkl", snap)
    with pytest.raises(CheckpointError, match="non-square"):
        load_discriminator(path)
    assert load_checkpoint(path).img_width == 16  # the generator still loads


# --------------------------------------------------------------------------------------------------
# StyleGAN3 snapshots (networks_stylegan3.Generator of the stylegan3 code base).


@pytest.mark.parametrize("radial,c_dim", [(False, 0), (True, 0), (False, 3)])
def test_stylegan3_pickles_load_strictly_and_render_like_their_source(standins, tmp_path, radial, c_dim):
    G = random_stylegan3(radial=radial, c_dim=c_dim)
    path = write_pickle(tmp_path / "stylegan3-t.pkl", stylegan3_snapshot(standins, G))
    G2 = load_checkpoint(path)
    assert type(G2) is StyleGAN3Generator and G2.synthesis.layer_names == G.synthesis.layer_names
    assert torch.equal(render(G2), render(G))
    for name, buf in G.named_buffers():  # the checkpoint's filters, not redesigned ones
        if name.endswith("_filter"):
            assert torch.equal(dict(G2.named_buffers())[name], buf)
    info = checkpoint_info(path)
    assert info.architecture == ("StyleGAN3-R" if radial else "StyleGAN3-T") and info.num_ws == G.num_ws
    assert not standins.ran()


def test_stylegan3_filters_come_from_the_file(standins, tmp_path):
    G = random_stylegan3()
    name = G.synthesis.layer_names[1]
    with torch.no_grad():
        getattr(G.synthesis, name).up_filter.mul_(1.5)  # a filter no designer would make
    G2 = load_checkpoint(write_pickle(tmp_path / "f.pkl", stylegan3_snapshot(standins, G)))
    assert torch.equal(render(G2), render(G))


def test_stylegan3_strictness_and_refusals(standins, tmp_path):
    G = random_stylegan3()
    snap = stylegan3_snapshot(standins, G)
    layer = snap["G_ema"].sub("synthesis", G.synthesis.layer_names[0])
    del layer.state["_buffers"]["down_filter"]
    with pytest.raises(CheckpointError, match=r"missing tensor 'synthesis\.L0_\w+\.down_filter'"):
        load_checkpoint(write_pickle(tmp_path / "missing.pkl", snap))
    snap = stylegan3_snapshot(standins, G, extra_kwargs={"conv_kernel": 1})  # the file's kernels are 3 x 3
    with pytest.raises(CheckpointError, match=r"tensor 'synthesis\.L0_\w+\.weight' has shape \[16, 16, 3, 3\]"):
        load_checkpoint(write_pickle(tmp_path / "mismatch.pkl", snap))
    snap = stylegan3_snapshot(standins, G, extra_kwargs={"channel_max": 32})  # channel counts are in the names
    with pytest.raises(CheckpointError, match=r"missing tensor 'synthesis\.L0_36_32\."):
        load_checkpoint(write_pickle(tmp_path / "names.pkl", snap))
    snap = stylegan3_snapshot(standins, G, extra_kwargs={"num_critical": 3, "margin_size": 4})
    # what the synthesis network recorded it was built with wins over the (here wrong) kwargs
    assert torch.equal(render(load_checkpoint(write_pickle(tmp_path / "recorded.pkl", snap))), render(G))
    snap["G_ema"].sub("synthesis").state["num_critical"] = 9
    with pytest.raises(CheckpointError, match="num_critical"):
        load_checkpoint(write_pickle(tmp_path / "critical.pkl", snap))
    snap = stylegan3_snapshot(standins, G)
    snap["G_ema"].state["_init_kwargs"] = {}
    del snap["G"]
    with pytest.raises(CheckpointError, match="no recorded init arguments"):
        load_checkpoint(write_pickle(tmp_path / "nokw.pkl", snap))


def test_stylegan_human_stylegan3_variant_is_refused(standins, tmp_path):
    G = random_stylegan3()
    snap = stylegan3_snapshot(standins, G, extra_kwargs={"square": False})
    with pytest.raises(CheckpointError, match="StyleGAN-Human StyleGAN3 variant"):
        load_checkpoint(write_pickle(tmp_path / "v3.pkl", snap))
    snap = stylegan3_snapshot(standins, G)
    snap["G_ema"].sub("synthesis", "input").state["size"] = np.array([18, 36])  # [W, H] of a 2:1 map
    with pytest.raises(CheckpointError, match="non-square maps"):
        load_checkpoint(write_pickle(tmp_path / "v3b.pkl", snap))


def test_stylegan3_layer_table_equals_the_built_network():
    for kw in (dict(), dict(radial=True), dict(res=32, num_layers=6, margin_size=4)):
        G = random_stylegan3(**kw)
        maps, num_ws = stylegan3_feature_maps(G.init_kwargs)
        assert num_ws == G.num_ws
        for m in maps:
            lg = G.synthesis.layer_geometry(m.index)
            assert (m.name, m.height, m.sampling_rate, m.channels, m.margin) == \
                (lg.name, lg.size, lg.sampling_rate, lg.channels, lg.margin)


# --------------------------------------------------------------------------------------------------
# Native format records the network family.


def test_native_records_the_network_family(tmp_path):
    G3 = random_stylegan3(radial=True)
    save_native(G3, tmp_path / "sg3")
    cfg = json.loads((tmp_path / "sg3.json").read_text())
    assert cfg["network"] == "stylegan3.Generator"
    G3b = load_native(tmp_path / "sg3")
    assert type(G3b) is StyleGAN3Generator and torch.equal(render(G3b), render(G3))
    G2 = random_stylegan2()
    save_native(G2, tmp_path / "sg2")
    cfg = json.loads((tmp_path / "sg2.json").read_text())
    assert cfg["network"] == "stylegan2.Generator"
    del cfg["network"]  # files written before the field existed are StyleGAN2
    (tmp_path / "sg2.json").write_text(json.dumps(cfg))
    assert torch.equal(render(load_native(tmp_path / "sg2")), render(G2))
    cfg["network"] = "biggan.Generator"
    (tmp_path / "sg2.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unknown network 'biggan.Generator'"):
        load_native(tmp_path / "sg2")


def test_native_stylegan3_config_is_bounded_by_the_schema(tmp_path):
    save_native(random_stylegan3(), tmp_path / "m")
    cfg = json.loads((tmp_path / "m.json").read_text())
    for change, message in [({"num_layers": 10**6}, "num_layers"), ({"filter_size": 1000}, "filter_size"),
                            ({"margin_size": -3}, "margin_size"), ({"first_stopband": 0.01}, "first_stopband"),
                            ({"use_radial_filters": "yes"}, "use_radial_filters"), ({"extra": 1}, "extra"),
                            ({"channel_max": 8192, "channel_base": 2**24}, "more memory than the file's tensors hold")]:
        bad = json.loads(json.dumps(cfg))
        bad["init_kwargs"]["synthesis_kwargs"].update(change)
        (tmp_path / "m.json").write_text(json.dumps(bad))
        with pytest.raises(CheckpointError, match=message):
            load_native(tmp_path / "m")


# --------------------------------------------------------------------------------------------------
# TensorFlow-era (G, D, Gs) pickles.


def test_tf_pickle_maps_variables_to_the_expected_pytorch_tensors(standins, tmp_path):
    """The tiny TF-layout network of test_tf_pkl.py, through a real pickle: a few expected tensors written out."""
    path = tmp_path / "stylegan2-cat-config-f.pkl"
    path.write_bytes(tf_pickle(standins, _tiny_tf(), _tiny_tf()))
    G = load_checkpoint(path)
    sd = G.state_dict()
    assert G.dragkit_metadata["source_format"] == "tf-pkl" and G.dragkit_metadata["network"] == "Gs"
    assert torch.equal(sd["mapping.fc0.weight"], torch.tensor([[0.0, 2, 4], [1, 3, 5]]))  # [in, out] -> [out, in]
    assert torch.equal(sd["synthesis.b4.conv1.affine.bias"], torch.tensor([1.5, 0.5]))  # TF's + 1 at run time
    assert torch.equal(sd["synthesis.b8.conv0.weight"][0, 0], torch.tensor([[16.0, 14, 12], [10, 8, 6], [4, 2, 0]]))
    assert torch.equal(sd["synthesis.b8.conv1.noise_const"], -torch.arange(64.0).reshape(8, 8) / 64)
    assert torch.equal(sd["mapping.w_avg"], torch.tensor([0.25, -0.5]))
    assert G.mapping.fc0.bias_gain == 0.5
    assert not standins.ran()


@pytest.mark.parametrize("arch,c_dim,ada", [("skip", 0, False), ("resnet", 0, False), ("skip", 3, True)])
def test_tf_pickles_render_like_the_network_they_hold(standins, tmp_path, arch, c_dim, ada):
    G = _random_generator(arch, c_dim)
    torch.manual_seed(0)
    D = Discriminator(16, 3, channel_base=128, channel_max=8, conv_clamp=None).eval()
    state = _to_tf_generator(G, ada=ada)
    path = tmp_path / "network-final.pkl"
    path.write_bytes(tf_pickle(standins, state, _to_tf_discriminator(D), state))
    G2 = load_checkpoint(path)
    for seed in (0, 1):
        assert (render(G2, seed) - render(G, seed)).abs().max() < 1e-5
    D2 = load_discriminator(path)
    imgs = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(D2(imgs), D(imgs))
    assert not standins.ran()


def test_dragkit_convert_turns_a_tf_pickle_into_the_native_format(standins, tmp_path, capsys):
    G = _random_generator("skip")
    state = _to_tf_generator(G)
    src = tmp_path / "stylegan2-car-config-f.pkl"
    src.write_bytes(tf_pickle(standins, state, _tiny_tf(), state))
    assert dragkit_main(["convert", str(src), str(tmp_path / "car")]) == 0
    cfg = json.loads((tmp_path / "car.json").read_text())
    assert cfg["network"] == "stylegan2.Generator" and cfg["metadata"]["converted_from"] == src.name
    assert (render(load_checkpoint(tmp_path / "car.safetensors")) - render(G)).abs().max() < 1e-5
    assert not standins.ran()


def test_tf_pickle_that_is_not_a_triple_is_refused(standins, tmp_path):
    net = tf_networks(standins, _tiny_tf())
    for obj in ((net, net), (net, net, {"a": 1})):
        path = tmp_path / "pair.pkl"
        path.write_bytes(pickle.dumps(obj, protocol=3))
        with pytest.raises(CheckpointError, match=r"\(G, D, Gs\) tuple"):
            load_checkpoint(path)


# --------------------------------------------------------------------------------------------------
# Hostile TensorFlow pickles: refused, and nothing from them ever runs.


def _tf_with(standins, change) -> bytes:
    state = _tiny_tf()
    change(state)
    return tf_pickle(standins, state, _tiny_tf(), state)


class _Exec:
    """Reduces to ``builtins.exec(code)``: a global the unpickler must refuse before calling it."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def test_build_module_src_that_writes_a_file_is_never_run(standins, tmp_path):
    path = tmp_path / "evil-src.pkl"
    path.write_bytes(tf_pickle(standins, _tiny_tf(), _tiny_tf()))
    assert "open(" in standins.module_src  # the embedded TF "source" writes the sentinel when executed
    G = load_checkpoint(path)
    assert G.img_resolution == 8 and not standins.sentinel.exists() and not standins.calls
    info = checkpoint_info(path)
    assert any("never run" in e for e in info.extras) and not standins.sentinel.exists()


@pytest.mark.parametrize("where", ["static_kwargs", "variables", "components"])
def test_network_state_smuggling_a_call_is_refused_before_it_runs(standins, tmp_path, where):
    sentinel = tmp_path / "SENTINEL_smuggled"
    boom = _Exec(f"open({str(sentinel)!r}, 'w').write('x')")

    def change(state):
        if where == "static_kwargs":
            state["static_kwargs"]["nonlinearity"] = boom
        elif where == "variables":
            state["components"]["mapping"]["variables"].append(("Dense0/extra", boom))
        else:
            state["components"]["extra"] = boom

    path = tmp_path / "smuggle.pkl"
    path.write_bytes(_tf_with(standins, change))
    with pytest.raises(CheckpointError, match=r"refusing to load global 'builtins\.exec'"):
        load_checkpoint(path)
    assert not sentinel.exists() and not standins.ran()
    pickle.loads(path.read_bytes())  # control: plain pickle runs it
    assert sentinel.exists()


@pytest.mark.parametrize("where", ["static_kwargs", "components", "variables"])
def test_network_state_holding_an_allowed_callable_as_data_is_refused(standins, tmp_path, where):
    """A callable the allow-list knows (here OrderedDict, a class) stored as a value, never called."""
    from collections import OrderedDict

    def change(state):
        if where == "static_kwargs":
            state["static_kwargs"]["mapping_func"] = OrderedDict
        elif where == "components":
            state["components"]["mapping"]["static_kwargs"]["hook"] = [OrderedDict]
        else:
            state["components"]["mapping"]["variables"].append(("Dense0/extra", OrderedDict))

    path = tmp_path / "callable.pkl"
    path.write_bytes(_tf_with(standins, change))
    with pytest.raises(CheckpointError, match=r"refusing a callable \(OrderedDict\)"):
        load_checkpoint(path)
    assert not standins.ran()


def test_extra_globals_in_a_tf_pickle_are_refused(standins, tmp_path):
    import dnnlib  # the stand-in package

    tfutil = type(dnnlib)("dnnlib.tflib.tfutil")

    def run(*a):  # pragma: no cover - never called by dragkit
        raise AssertionError("called")

    run.__module__, run.__qualname__ = "dnnlib.tflib.tfutil", "run"
    tfutil.run = run
    import sys

    sys.modules["dnnlib.tflib.tfutil"] = tfutil
    try:
        data = _tf_with(standins, lambda s: s["static_kwargs"].update(fused_modconv=run))
    finally:
        del sys.modules["dnnlib.tflib.tfutil"]
    path = tmp_path / "global.pkl"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=r"refusing to load global 'dnnlib\.tflib\.tfutil\.run'"):
        load_checkpoint(path)
    assert not standins.ran()


def test_network_built_from_constructor_arguments_is_refused(standins, tmp_path):
    class Built:
        def __reduce__(self):
            return (standins.Network, ({"version": 4},))

    path = tmp_path / "reduce.pkl"
    path.write_bytes(pickle.dumps((Built(), Built(), Built()), protocol=3))
    with pytest.raises(CheckpointError, match="constructor arguments"):
        load_checkpoint(path)


def test_tf_pickle_declaring_a_huge_network_is_refused_without_allocating_it(standins, tmp_path):
    def change(state):
        for s in (state, state["components"]["mapping"], state["components"]["synthesis"]):
            s["static_kwargs"].update(resolution=4096, fmap_base=2**20, fmap_max=4096, dlatent_size=4096,
                                      latent_size=4096)

    path = tmp_path / "huge.pkl"
    path.write_bytes(_tf_with(standins, change))
    with pytest.raises(CheckpointError, match="more memory than the file's tensors hold"):
        load_checkpoint(path)


# --------------------------------------------------------------------------------------------------
# dragkit models --info


def test_models_info_describes_each_kind_without_building_it(standins, tmp_path, capsys, monkeypatch):
    G = random_stylegan2(res=32, square=False, c_dim=2)
    human = write_pickle(tmp_path / "human.pkl", stylegan2_snapshot(standins, G, "human-unrecorded"))
    sg3 = write_pickle(tmp_path / "sg3.pkl", stylegan3_snapshot(standins, random_stylegan3(res=32, num_layers=6)))
    tf = tmp_path / "tf.pkl"
    tf.write_bytes(tf_pickle(standins, _tiny_tf(), _tiny_tf()))
    save_native(random_stylegan2(res=16), tmp_path / "native")

    import dragkit.formats.arch as arch

    def no_build(*a, **k):
        raise AssertionError("--info built a network")

    monkeypatch.setattr(arch, "build_bounded", no_build)
    monkeypatch.setattr("dragkit.formats.native.build_bounded", no_build)

    assert dragkit_main(["models", "--info", str(human)]) == 0
    out = capsys.readouterr().out
    assert "StyleGAN2 (skip), non-square (StyleGAN-Human)" in out and "32 x 16 (H x W)" in out
    assert "class-conditional, c_dim 2" in out and "W codes       8" in out
    assert "b16      16 x 8" in out and "(default for dragging)" in out
    assert "D: discriminator" in out and "augment_pipe" in out and "training_set_kwargs" in out

    assert dragkit_main(["models", "--info", str(sg3), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["architecture"] == "StyleGAN3-T" and d["num_ws"] == 8 and d["network"] == "stylegan3.Generator"
    assert d["feature_maps"][3]["margin"] > 0 and d["height"] == d["width"] == 32

    assert dragkit_main(["models", "--info", str(tf)]) == 0
    out = capsys.readouterr().out
    assert "TensorFlow-era pickle" in out and "8 x 8 (H x W)" in out and "never run" in out

    assert dragkit_main(["models", "--info", str(tmp_path / "native.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "dragkit native" in out and "from config" in out
    assert not standins.ran()


def test_models_info_refuses_hostile_files_like_a_load(tmp_path, capsys):
    path = tmp_path / "evil.pkl"
    path.write_bytes(b"cos\nsystem\n(S'touch " + str(tmp_path / "SENTINEL").encode() + b"'\ntR.")
    assert dragkit_main(["models", "--info", str(path)]) == 1
    err = capsys.readouterr().err
    assert "refusing to load global 'os.system'" in err and not (tmp_path / "SENTINEL").exists()
