"""The StyleGAN2 trainer on a tiny config: losses, checkpoints, exact resume, data errors."""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dragkit.cli import main as cli_main
from dragkit.errors import CheckpointError, DragkitError
from dragkit.nets.discriminator import Discriminator, minibatch_std
from dragkit.train.augment import diff_augment, parse_policy
from dragkit.train.checkpoint import load_checkpoint, save_checkpoint
from dragkit.train.dataset import ImageDataset, parse_range
from dragkit.train.export import export_networks, load_discriminator, run_metadata
from dragkit.train.loop import Trainer, make_config
from dragkit.train.toy import write_toy_dataset
from support.nvidia import nvidia_snapshot, persist, write_pickle


def _tiny(**kw):
    base = dict(data="toy", resolution=32, kimg=0.032, tick_kimg=0.008, snap_ticks=2, sample_ticks=2, seed=1,
                pl_weight=1.0, pl_interval=4, r1_interval=4)
    base.update(kw)
    return make_config("tiny", **base)


def _assert_same_state(a: Trainer, b: Trainer) -> None:
    assert a.cur_nimg == b.cur_nimg and a.iteration == b.iteration
    for name in ("G", "D", "G_ema"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{name}.{k} differs"
    for name in ("opt_G", "opt_D"):
        sa, sb = getattr(a, name).state_dict()["state"], getattr(b, name).state_dict()["state"]
        assert sa.keys() == sb.keys()
        for k in sa:
            for n in sa[k]:
                assert torch.equal(torch.as_tensor(sa[k][n]), torch.as_tensor(sb[k][n])), f"{name}[{k}].{n} differs"
    assert torch.equal(a.pl_mean, b.pl_mean)


def test_tiny_training_writes_finite_log_checkpoint_and_grids(tmp_path: Path) -> None:
    t = Trainer(_tiny(), tmp_path / "run", progress=False)
    before = {k: v.clone() for k, v in t.G.state_dict().items()}
    assert t.train() == "done"
    assert t.iteration == 8 and t.kimg == pytest.approx(0.032)
    lines = [json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [e["tick"] for e in lines] == [1, 2, 3, 4]
    for e in lines:
        for key in ("loss_G", "loss_D", "score_real", "score_fake", "sec_per_kimg"):
            assert math.isfinite(e[key])
    assert any("r1_penalty" in e for e in lines) and any("pl_penalty" in e for e in lines)
    assert "toy_oracle_rate" in lines[-1]
    assert (tmp_path / "run" / "reals.png").is_file()
    assert len(list((tmp_path / "run").glob("fakes*.png"))) == 2
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["cur_nimg"] == 32 and state["iteration"] == 8
    # G learned something and G_ema trails it.
    after = t.G.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert any(not torch.equal(t.G_ema.state_dict()[k], after[k]) for k in after if after[k].is_floating_point())


def test_resume_reproduces_an_uninterrupted_run_exactly(tmp_path: Path) -> None:
    full = Trainer(_tiny(kimg=0.032), tmp_path / "full", progress=False)
    full.train()

    half = Trainer(_tiny(kimg=0.016), tmp_path / "split", progress=False)
    half.train()
    assert half.iteration == 4
    # The remaining half in a fresh Trainer (as after a restart); kimg extended on resume.
    resumed = Trainer(_tiny(kimg=0.032), tmp_path / "split", resume=True, progress=False)
    assert resumed.iteration == 4 and resumed.cur_nimg == 16
    _assert_same_state(half, resumed)  # the checkpoint holds the whole state
    resumed.train()
    _assert_same_state(full, resumed)
    ticks = [json.loads(s)["tick"] for s in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert ticks == [1, 2, 3, 4]


def test_stop_signal_writes_checkpoint_and_resume_continues(tmp_path: Path) -> None:
    class Interrupted(Trainer):
        def step(self):
            stats = super().step()
            if self.iteration == 3:
                signal.raise_signal(signal.SIGINT)  # as Ctrl-C mid-run (between ticks)
            return stats

    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN under nohup
    t = Interrupted(_tiny(), tmp_path / "run", progress=False)
    assert t.train() == "interrupted"
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["iteration"] == 3  # nothing lost: the stop wrote the checkpoint
    assert signal.getsignal(signal.SIGINT) is before  # the trainer's handler is removed again
    resumed = Trainer(_tiny(), tmp_path / "run", resume=True, progress=False)
    assert resumed.train() == "done"
    full = Trainer(_tiny(), tmp_path / "full", progress=False)
    full.train()
    _assert_same_state(full, resumed)


def test_resume_can_lower_the_learning_rate_and_lengthen_the_ema(tmp_path: Path) -> None:
    Trainer(_tiny(kimg=0.008), tmp_path / "run", progress=False).train()
    t = Trainer(_tiny(kimg=0.016), tmp_path / "run", resume=True, progress=False,
                retune={"glr": 0.001, "ema_kimg": 5.0})
    assert t.cfg.glr == 0.001 and t.cfg.ema_kimg == 5.0 and t.cfg.dlr == _tiny().dlr
    ratio = 4 / 5  # lazy regularisation every 4 minibatches scales Adam's lr (pl_interval 4)
    assert all(g["lr"] == pytest.approx(0.001 * ratio) for g in t.opt_G.param_groups)
    assert all(g["lr"] == pytest.approx(_tiny().dlr * ratio) for g in t.opt_D.param_groups)
    t.train()
    # the checkpoint keeps the new schedule for later resumes
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["config"]["glr"] == 0.001
    again = Trainer(_tiny(kimg=0.024), tmp_path / "run", resume=True, progress=False)
    assert again.cfg.glr == 0.001
    assert all(g["lr"] == pytest.approx(0.001 * ratio) for g in again.opt_G.param_groups)
    with pytest.raises(DragkitError, match="batch"):
        Trainer(_tiny(kimg=0.024), tmp_path / "run", resume=True, progress=False, retune={"batch": 8})
    assert cli_main(["train", "--outdir", str(tmp_path / "run"), "--resume", "--batch", "8"]) == 1


def test_new_run_refuses_to_overwrite_and_bad_checkpoint_is_clear(tmp_path: Path) -> None:
    Trainer(_tiny(kimg=0.008), tmp_path / "run", progress=False).train()
    with pytest.raises(DragkitError, match="--resume"):
        Trainer(_tiny(), tmp_path / "run", progress=False)
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="checkpoint.pt"):
        Trainer(_tiny(), tmp_path / "run", resume=True, progress=False)


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"cur_nimg": 1, "w": torch.ones(3)}, path)

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        save_checkpoint({"cur_nimg": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["cur_nimg"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def _toy_zip(tmp_path: Path, n: int = 8, res: int = 32) -> Path:
    return write_toy_dataset(tmp_path / "data.zip", n, seed=0, resolution=res)


def _replace_member(zpath: Path, name: str, data: bytes) -> None:
    with zipfile.ZipFile(zpath) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members[name] = data
    with zipfile.ZipFile(zpath, "w") as z:
        for n, d in members.items():
            z.writestr(n, d)


def test_corrupt_image_in_zip_gives_one_clear_error_naming_the_file(tmp_path: Path, capsys) -> None:
    z = _toy_zip(tmp_path)
    _replace_member(z, "00003.png", b"this is not a png")
    with pytest.raises(DragkitError, match="00003.png"):
        ImageDataset(z)
    rc = cli_main(["train", "--cfg", "tiny", "--data", str(z), "--kimg", "0.008", "--outdir", str(tmp_path / "r"),
                   "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and "00003.png" in err[0] and "Traceback" not in err[0]


def test_truncated_image_fails_when_decoded_naming_the_file(tmp_path: Path) -> None:
    z = _toy_zip(tmp_path)
    with zipfile.ZipFile(z) as zf:
        good = zf.read("00005.png")
    _replace_member(z, "00005.png", good[: len(good) // 2])  # header intact, pixels cut off
    ds = ImageDataset(z)
    with pytest.raises(DragkitError, match="00005.png"):
        ds.load(5)


def test_image_folder_zip_and_data_range(tmp_path: Path) -> None:
    z = _toy_zip(tmp_path, n=10)
    ds = ImageDataset(z, data_range=parse_range("2:5"))
    assert len(ds) == 3 and ds.names == ["00002.png", "00003.png", "00004.png"] and ds.resolution == 32
    folder = write_toy_dataset(tmp_path / "folder", 4, seed=0, resolution=32)
    ds2 = ImageDataset(folder)
    assert len(ds2) == 4
    assert np.array_equal(ds2.load(1), ImageDataset(z).load(1))
    b = ds.batch(iteration=0, batch_size=4, seed=0, xflip=True)
    assert b.shape == (4, 3, 32, 32) and b.dtype == torch.uint8
    assert torch.equal(b, ds.batch(iteration=0, batch_size=4, seed=0, xflip=True))
    with pytest.raises(DragkitError, match="exceeds"):
        ImageDataset(z, data_range=(0, 11))
    with pytest.raises(DragkitError):
        parse_range("5")
    assert parse_range("0:19000") == (0, 19000) and parse_range("100:") == (100, -1)


def test_training_on_an_image_zip_with_diffaugment_and_xflip(tmp_path: Path) -> None:
    z = _toy_zip(tmp_path, n=8)
    cfg = _tiny(data=str(z), resolution=None, kimg=0.016, diffaug="translation,cutout,color", xflip=True,
                data_range="0:6")
    t = Trainer(cfg, tmp_path / "run", progress=False)
    assert t.train() == "done"
    line = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    assert "toy_oracle_rate" not in line and math.isfinite(line["loss_D"])


def test_export_writes_native_generator_and_discriminator(tmp_path: Path) -> None:
    from dragkit.formats.native import load_native

    t = Trainer(_tiny(kimg=0.008), tmp_path / "run", progress=False)
    t.train()
    paths = export_networks(t, tmp_path / "out" / "tiny", metadata={"kimg": t.kimg})
    assert sorted(p.name for p in paths) == ["tiny.disc.json", "tiny.disc.safetensors", "tiny.json", "tiny.safetensors"]
    G = load_native(tmp_path / "out" / "tiny")
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        assert torch.equal(G(z, None, noise_mode="const"), t.G_ema(z, None, noise_mode="const"))
    D = load_discriminator(tmp_path / "out" / "tiny")
    img = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(D(img), t.D.eval()(img))
    # the CLI does the same at the end of a run
    rc = cli_main(["train", "--outdir", str(tmp_path / "run"), "--resume", "--kimg", "0.008",
                   "--export", str(tmp_path / "cli" / "m"), "--no-progress"])
    assert rc == 0 and (tmp_path / "cli" / "m.safetensors").is_file() and (tmp_path / "cli" / "m.disc.json").is_file()


def test_discriminator_shapes_and_minibatch_std() -> None:
    D = Discriminator(32, 3, channel_base=256, channel_max=32, mbstd_group_size=2)
    assert [n for n, _ in D.named_parameters()][:3] == ["b32.fromrgb.weight", "b32.fromrgb.bias", "b32.conv0.weight"]
    assert "b4.out.bias" in dict(D.named_parameters())
    out = D(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 1)
    x = torch.randn(4, 5, 4, 4)
    y = minibatch_std(x, group_size=2)
    assert y.shape == (4, 6, 4, 4) and torch.equal(y[:, :5], x)
    # identical samples within a group have zero std
    same = torch.ones(4, 5, 4, 4)
    assert minibatch_std(same, 4)[:, 5].abs().max() < 1e-3
    with pytest.raises(ValueError):
        D(torch.randn(4, 3, 16, 16))


def test_diffaugment_keeps_shape_and_passes_gradients() -> None:
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    y = diff_augment(x, parse_policy("translation,cutout,color"))
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert parse_policy("none") == ()
    with pytest.raises(DragkitError):
        parse_policy("rotation")


# --------------------------------------------------------------------------
# bf16 on the CPU, fine-tuning from a model, several processes


def test_bf16_autocast_trains_on_the_cpu_and_keeps_r1_in_fp32(tmp_path: Path) -> None:
    t = Trainer(_tiny(kimg=0.016, pl_weight=0.0), tmp_path / "run", amp=True, progress=False)
    assert t.amp and t.device.type == "cpu"
    seen: list[tuple[bool, torch.dtype]] = []
    t.D.b4.out.register_forward_hook(lambda m, i, o: seen.append((torch.is_autocast_enabled("cpu"), o.dtype)))
    before = {k: v.clone() for k, v in t.G.state_dict().items()}
    assert t.train() == "done"
    lines = [json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(e[k]) for e in lines for k in ("loss_G", "loss_D", "r1_penalty") if k in e)
    assert any(not torch.equal(before[k], v) for k, v in t.G.state_dict().items())
    # main passes ran in bf16, the R1 pass (every 4th iteration here) in fp32
    assert (True, torch.bfloat16) in seen and (False, torch.float32) in seen
    # weights and optimiser state stay fp32
    assert all(p.dtype == torch.float32 for p in list(t.G.parameters()) + list(t.D.parameters()))


def test_amp_default_follows_the_hardware(tmp_path: Path) -> None:
    from dragkit.utils import native_bf16

    t = Trainer(_tiny(kimg=0.004), tmp_path / "run", amp=None, progress=False)
    assert t.amp == native_bf16("cpu")
    assert native_bf16("meta") is False


def test_faces128_preset_matches_the_head_start() -> None:
    cfg = make_config("faces128", data="x.zip")
    got = {k: getattr(cfg, k) for k in ("batch", "z_dim", "w_dim", "map_layers", "g_channel_base", "g_channel_max",
                                        "d_channel_base", "d_channel_max", "xflip", "diffaug", "style_mixing")}
    assert got == dict(batch=16, z_dim=256, w_dim=256, map_layers=4, g_channel_base=4096, g_channel_max=128,
                       d_channel_base=2048, d_channel_max=128, xflip=True, diffaug="color,translation",
                       style_mixing=0.9)
    head = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces128-headstart" / "config.json"
    if head.is_file():  # the shared head start, where the checkout has it beside it
        saved = json.loads(head.read_text())
        assert {k: saved[k] for k in got} == got


def test_init_from_a_native_export_starts_from_its_networks(tmp_path: Path) -> None:
    src = Trainer(_tiny(kimg=0.008), tmp_path / "src", progress=False)
    src.train()
    export_networks(src, tmp_path / "m" / "tiny")
    t = Trainer(_tiny(kimg=0.016, z_dim=None), tmp_path / "ft", progress=False, init_from=str(tmp_path / "m" / "tiny.safetensors"))
    for name in ("G", "G_ema"):
        for k, v in getattr(t, name).state_dict().items():
            assert torch.equal(v, src.G_ema.state_dict()[k]), f"{name}.{k}"
    for k, v in t.D.state_dict().items():
        assert torch.equal(v, src.D.state_dict()[k]), f"D.{k}"
    assert t.opt_G.state_dict()["state"] == {} and t.cur_nimg == 0
    assert t.cfg.init_from.endswith("tiny.safetensors")
    assert t.train() == "done"
    # the run resumes like any other (its networks come from the checkpoint)
    again = Trainer(_tiny(kimg=0.024), tmp_path / "ft", resume=True, progress=False)
    _assert_same_state(t, again)


def test_init_kimg_continues_the_count_of_the_model_it_starts_from(tmp_path: Path) -> None:
    # A run whose checkpoint was lost goes on from its export: it counts from the export's kimg
    # (so --kimg stays the total and the exported kimg is the whole run's) and the EMA ramp-up continues.
    src = Trainer(_tiny(kimg=0.008), tmp_path / "src", progress=False)
    src.train()
    export_networks(src, tmp_path / "m" / "tiny")
    model = str(tmp_path / "m" / "tiny.safetensors")
    t = Trainer(_tiny(kimg=0.016, z_dim=None, init_kimg=0.008), tmp_path / "ft", progress=False, init_from=model)
    assert t.cur_nimg == 8 and t.kimg == pytest.approx(0.008)
    assert t.train() == "done" and t.cur_nimg == 16
    assert (tmp_path / "ft" / "reals.png").is_file()  # a new run, though its count did not start at 0
    export_networks(t, tmp_path / "m2" / "tiny", metadata=run_metadata(dataclasses.asdict(t.cfg), t.kimg, 0.0))
    meta = json.loads((tmp_path / "m2" / "tiny.json").read_text())["metadata"]
    assert meta["kimg"] == pytest.approx(0.016) and meta["init_kimg"] == pytest.approx(0.008)
    with pytest.raises(DragkitError, match="--init-from"):
        Trainer(_tiny(kimg=0.016, init_kimg=0.008), tmp_path / "a", progress=False)
    with pytest.raises(DragkitError, match="total"):
        Trainer(_tiny(kimg=0.008, z_dim=None, init_kimg=0.008), tmp_path / "b", progress=False, init_from=model)


def test_init_from_an_nvidia_pickle_reads_its_discriminator(tmp_path: Path, nvidia_modules) -> None:  # noqa: F811
    from dragkit.nets import Generator

    torch.manual_seed(0)
    G = Generator(32, 0, 32, 32, 3, mapping_kwargs={"num_layers": 2},
                  synthesis_kwargs={"channel_base": 256, "channel_max": 32, "conv_clamp": 256}).eval()
    D = Discriminator(32, 3, channel_base=256, channel_max=32, mbstd_group_size=2).eval()
    for name, module in D.named_modules():  # NVIDIA keeps the FIR filter as a buffer in each block and conv
        if name.count(".") == 0 and name.startswith("b") and name != "b4" or name.endswith(("conv0", "conv1", "skip")):
            module.register_buffer("resample_filter", torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64)
    d_kwargs = nvidia_modules.EasyDict(c_dim=0, img_resolution=32, img_channels=3, architecture="resnet",
                                       channel_base=256, channel_max=32, num_fp16_res=0, conv_clamp=256,
                                       epilogue_kwargs=nvidia_modules.EasyDict(mbstd_group_size=2))
    snap = nvidia_snapshot(nvidia_modules, G)
    snap["D"] = persist(nvidia_modules, D, d_kwargs, class_name="Discriminator")
    pkl = write_pickle(tmp_path / "net.pkl", snap)
    t = Trainer(_tiny(kimg=0.008), tmp_path / "ft", progress=False, init_from=str(pkl))
    assert not nvidia_modules.sentinel.exists()
    img = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(t.D.eval()(img), D(img))
        z = torch.randn(1, 32)
        assert torch.equal(t.G_ema(z, None, noise_mode="const"), G(z, None, noise_mode="const"))
    assert t.train() == "done"


def test_init_from_mismatches_are_one_clear_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(DragkitError, match="32 px"):  # the bundled toy model is 32 px; this data is 64 px
        Trainer(_tiny(resolution=64), tmp_path / "a", progress=False, init_from="toy")
    rc = cli_main(["train", "--cfg", "tiny", "--data", "toy", "--resolution", "32", "--init-from", "toy",
                   "--g-channel-base", "512", "--outdir", str(tmp_path / "b"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "--g-channel-base" in err[0]
    rc = cli_main(["train", "--cfg", "tiny", "--data", "toy", "--init-from", str(tmp_path / "missing.pkl"),
                   "--outdir", str(tmp_path / "c"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "missing.pkl" in err[0]


def test_two_gloo_processes_train_in_step(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "dragkit", "train", "--cfg", "tiny", "--data", "toy", "--resolution", "32", "--batch", "8",
           "--kimg", "0.024", "--tick-kimg", "0.008", "--r1-interval", "2", "--outdir", str(out), "--no-progress",
           "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(s) for s in (out / "log.jsonl").read_text().splitlines()]
    assert [e["tick"] for e in lines] == [1, 2, 3]  # one log, written by rank 0 alone
    assert all(e["ranks_in_sync"] is True for e in lines)  # the same G, G_ema and D on both ranks
    assert all(math.isfinite(e[k]) for e in lines for k in ("loss_G", "loss_D"))
    assert any("r1_penalty" in e for e in lines)
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".pt") == ["checkpoint.pt"]
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["cur_nimg"] == 24 and state["iteration"] == 3
    assert "2 processes of 4" in proc.stderr


def test_rank_fingerprint_tells_networks_apart() -> None:
    from dragkit.train.distributed import fingerprint

    a = Discriminator(32, 3, channel_base=256, channel_max=32)
    b = Discriminator(32, 3, channel_base=256, channel_max=32)
    b.load_state_dict(a.state_dict())
    assert torch.equal(fingerprint(a), fingerprint(b))
    with torch.no_grad():
        b.b8.conv0.weight[0, 0, 0, 0] += 1e-6
    assert not torch.equal(fingerprint(a), fingerprint(b))
    with torch.no_grad():  # a permutation keeps the plain sum: the weighted sum still sees it
        b.load_state_dict(a.state_dict())
        b.b8.conv0.weight[:2] = b.b8.conv0.weight[:2].flip(0).clone()
    assert not torch.equal(fingerprint(a), fingerprint(b))


def test_export_now_writes_the_checkpoints_networks_without_touching_the_run(tmp_path: Path) -> None:
    from dragkit.formats.native import load_native

    t = Trainer(_tiny(kimg=0.008), tmp_path / "run", progress=False)
    t.train()
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").iterdir()}
    assert cli_main(["train", "--outdir", str(tmp_path / "run"), "--export", str(tmp_path / "x" / "m"),
                     "--export-now", "--export-fp16"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").iterdir()} == before
    G = load_native(tmp_path / "x" / "m")
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        a, b = G(z, None, noise_mode="const"), t.G_ema(z, None, noise_mode="const")
    assert (a - b).abs().max() < 0.05  # fp16 storage
    assert json.loads((tmp_path / "x" / "m.json").read_text())["metadata"]["kimg"] == pytest.approx(0.008)
    D = load_discriminator(tmp_path / "x" / "m")
    img = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(D(img), t.D.eval()(img))
