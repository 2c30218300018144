"""The StyleGAN2 training loop.

What it does, following Karras et al. (StyleGAN2, CVPR 2020) and NVIDIA's
``stylegan2-ada-pytorch`` training code:

* non-saturating logistic loss for G and D;
* lazy R1 regularisation of D on real images every ``r1_interval``
  minibatches, weighted by ``gamma / 2 * interval``;
* optional lazy path-length regularisation of G (``pl_weight > 0``);
* Adam with betas (0, 0.99); the regularised networks' lr and betas are
  corrected by ``interval / (interval + 1)``;
* an exponential moving average of G (``G_ema``) with a half-life of
  ``ema_kimg`` thousand images and ramp-up ``ema_rampup``;
* style mixing regularisation (``style_mixing`` probability);
* the mapping network's lr multiplier (0.01), built into the generator;
* optional DiffAugment (Zhao et al. 2020) on everything D sees, x-flips of
  real images;
* bf16 autocast of the main passes on CUDA or the CPU (``amp``) and optional
  ``torch.compile``.

Reproducibility: every random number of iteration ``k`` (latents, noise,
style-mixing cut-offs, augmentations, the choice of real images) is a
function of ``(seed, k)``; a checkpoint holds everything else (networks,
optimiser states, image count), so a resumed run continues exactly as an
uninterrupted one would have.

Outputs in ``outdir``: ``checkpoint.pt`` (atomic), ``log.jsonl`` (one JSON
object per tick), ``reals.png`` and ``fakes{kimg:08.3f}.png`` sample grids,
``config.json``.
"""
# Why this module is long (~720 lines): the Trainer's phases (G, D, R1, path length, EMA,
# snapshots, resume) share its state; splitting them would pass that state around by hand.
from __future__ import annotations

import copy
import dataclasses
import json
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CheckpointError, DragkitError
from ..utils import atomic_write_bytes
from .augment import diff_augment, parse_policy
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from .dataset import ImageDataset, ToyWorldSource, open_source, parse_range, save_grid, to_float

__all__ = ["TrainConfig", "Trainer", "PRESETS", "make_config"]


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in the checkpoint).

    Architecture fields only matter for a new run; a resumed run keeps those
    of its checkpoint.
    """

    data: str = "toy"
    data_range: str | None = None
    resolution: int | None = None
    seed: int = 0
    kimg: float = 100.0
    batch: int = 16
    # generator
    z_dim: int = 128
    w_dim: int = 128
    map_layers: int = 2
    map_lr_mult: float = 0.01
    g_channel_base: int = 2048
    g_channel_max: int = 96
    # discriminator
    d_channel_base: int = 1024
    d_channel_max: int = 64
    mbstd_group: int = 4
    # optimisation
    glr: float = 0.0025
    dlr: float = 0.0025
    gamma: float | None = None  # None: NVIDIA's auto rule 0.0002 * res^2 / batch
    r1_interval: int = 16
    pl_weight: float = 0.0
    pl_interval: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing: float = 0.9
    ema_kimg: float | None = None  # None: batch * 10 / 32
    ema_rampup: float | None = 0.05
    xflip: bool = False
    diffaug: str = ""
    # bookkeeping
    tick_kimg: float = 1.0
    snap_ticks: int = 5
    sample_ticks: int = 5
    grid: int = 32
    preset: str = "custom"
    init_from: str | None = None  # the model a fine-tuning run started from (for the record)
    init_kimg: float = 0.0  # with init_from: images that model had already seen (the run counts on from there)

    def resolved_gamma(self, resolution: int) -> float:
        return self.gamma if self.gamma is not None else 0.0002 * resolution**2 / self.batch

    def resolved_ema_kimg(self) -> float:
        return self.ema_kimg if self.ema_kimg is not None else self.batch * 10 / 32


# Presets: --cfg NAME; any flag given on the command line overrides.
PRESETS: dict[str, dict[str, Any]] = {
    # The bundled toy model: procedural toy world drawn on the fly, 32 px
    # (64 px trained too slowly on 2 shared CPU cores; see docs/toy-model.md).
    "toy": dict(
        data="toy", resolution=32, batch=16, z_dim=128, w_dim=128, map_layers=2,
        g_channel_base=2048, g_channel_max=96, d_channel_base=1024, d_channel_max=96,
        glr=0.0025, dlr=0.0025, gamma=1.0, style_mixing=0.5, ema_kimg=2.0, ema_rampup=0.05,
        xflip=False, diffaug="", tick_kimg=1.0, snap_ticks=2, sample_ticks=4, grid=32,
    ),
    # The same at 64 px (about 3x slower per image).
    "toy64": dict(
        data="toy", resolution=64, batch=16, z_dim=128, w_dim=128, map_layers=2,
        g_channel_base=2048, g_channel_max=96, d_channel_base=1024, d_channel_max=64,
        glr=0.0025, dlr=0.0025, gamma=1.0, style_mixing=0.5, ema_kimg=2.0, ema_rampup=0.05,
        xflip=False, diffaug="", tick_kimg=1.0, snap_ticks=2, sample_ticks=4, grid=32,
    ),
    # 128 px faces (CelebA zip), the default app model.
    # 128 px faces (CelebA zip), the default app model: sized for 2 CPU cores
    # (G 1.90 M, D 1.19 M parameters); the configuration of the shared head start.
    "faces128": dict(
        resolution=128, batch=16, z_dim=256, w_dim=256, map_layers=4,
        g_channel_base=4096, g_channel_max=128, d_channel_base=2048, d_channel_max=128,
        glr=0.0025, dlr=0.0025, gamma=None, style_mixing=0.9, ema_kimg=None, ema_rampup=0.05,
        xflip=True, diffaug="color,translation", tick_kimg=4.0, snap_ticks=1, sample_ticks=2, grid=32,
    ),
    # Tests: seconds per iteration on a CPU.
    "tiny": dict(
        batch=4, z_dim=32, w_dim=32, map_layers=2, g_channel_base=256, g_channel_max=32,
        d_channel_base=256, d_channel_max=32, mbstd_group=2, style_mixing=0.9,
        tick_kimg=0.008, snap_ticks=1, sample_ticks=1, grid=4,
    ),
}


def make_config(preset: str | None = None, **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a preset name plus overrides (None values are ignored)."""
    base: dict[str, Any] = {}
    if preset:
        if preset not in PRESETS:
            raise DragkitError(f"unknown --cfg {preset!r}; choose from {', '.join(PRESETS)}")
        base.update(PRESETS[preset])
        base["preset"] = preset
    base.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(base) - names
    if unknown:
        raise DragkitError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    return TrainConfig(**base)


def _iteration_seed(seed: int, iteration: int) -> int:
    # A distinct 63-bit seed per (run seed, iteration), via NumPy's SeedSequence.
    return int(np.random.SeedSequence([int(seed), int(iteration)]).generate_state(2, np.uint32).astype(np.uint64)
               .view(np.uint64)[0] & np.uint64(0x7FFF_FFFF_FFFF_FFFF))


class _StopFlag:
    """SIGINT / SIGTERM -> stop after the current iteration (a second SIGINT aborts)."""

    def __init__(self) -> None:
        self.stop = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        import threading

        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stop = True
        print("\ndragkit train: stopping after this iteration (writing a checkpoint); "
              "press Ctrl-C again to abort", file=sys.stderr)

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Trainer:
    """A StyleGAN2 training run in ``outdir`` (new or resumed).

    Args:
        cfg: the run's configuration (ignored in favour of the checkpoint's
            on resume, except ``kimg`` and the bookkeeping intervals).
        outdir: run folder.
        resume: continue the checkpoint in ``outdir``.
        device: ``'cpu'``, ``'cuda'``, ...
        amp: bf16 autocast of the main forward passes (CUDA or CPU; the
            regularisation passes stay fp32).  ``None``: on where the device
            computes bf16 natively (:func:`dragkit.utils.native_bf16`).
        compile: ``torch.compile`` G and D for the main (non-regularisation)
            passes.
        channels_last: keep G's and D's weights and the images in the
            channels-last memory layout.
        init_from: start a new run from this model (anything
            :func:`dragkit.load_model` reads) instead of random weights: its
            generator becomes G and G_ema, its discriminator (native ``.disc``
            files, an NVIDIA pickle's ``D``) becomes D - a fresh D when the file
            has none; the optimiser states start fresh.  The architecture is
            the model's; the data's resolution must match it.  With
            ``cfg.init_kimg`` the run counts on from that many kimg (the
            kimg counter, ``cfg.kimg`` as the total and the EMA ramp-up),
            which continues a run whose checkpoint was lost from its export.
        progress: show a progress bar on stderr.
        log: a callable for one-line messages (default: print to stderr).
    """

    # Settings a resumed run may change (a schedule: e.g. a lower learning
    # rate and a longer EMA for the last stretch); the new values are saved
    # in the checkpoint, so later resumes keep them.
    RETUNABLE = ("glr", "dlr", "ema_kimg")

    def __init__(self, cfg: TrainConfig, outdir: str | Path, resume: bool = False,
                 device: str | torch.device = "cpu", amp: bool | None = False, compile: bool = False,
                 progress: bool = True, log: Callable[[str], None] | None = None,
                 retune: dict[str, float] | None = None, init_from: str | None = None,
                 channels_last: bool = False) -> None:
        from ..nets import Generator
        from ..nets.discriminator import Discriminator
        from . import distributed

        self.outdir = Path(outdir)
        self.dist, self.device = distributed.setup(torch.device(device))
        if amp is None:
            from ..utils import native_bf16

            amp = native_bf16(self.device)
        self.amp = bool(amp) and self.device.type in ("cuda", "cpu")
        self.progress = progress and self.dist.is_main
        log = log or (lambda msg: print(msg, file=sys.stderr))
        self.log = log if self.dist.is_main else (lambda msg: None)
        ckpt_path = self.outdir / CHECKPOINT_NAME
        state = None
        if resume:
            state = load_checkpoint(ckpt_path)
            saved = dict(state["config"])
            for key in ("kimg", "tick_kimg", "snap_ticks", "sample_ticks"):
                saved[key] = getattr(cfg, key)
            for key, value in (retune or {}).items():
                if key not in self.RETUNABLE:
                    raise DragkitError(f"a resumed run cannot change {key}")
                if value is not None:
                    if not value > 0:
                        raise DragkitError(f"{key} must be > 0, got {value}")
                    if value != saved.get(key):
                        self.log(f"dragkit train: {key} {saved.get(key)} -> {value} from here on")
                    saved[key] = value
            names = {f.name for f in dataclasses.fields(TrainConfig)}
            cfg = TrainConfig(**{k: v for k, v in saved.items() if k in names})
        elif ckpt_path.exists():
            raise DragkitError(
                f"{self.outdir} already holds a training run; pass --resume to continue it "
                "or choose another --outdir"
            )
        if resume and init_from is not None:
            raise DragkitError("--init-from starts a new run; a resumed run continues from its checkpoint")
        if not resume and cfg.init_kimg and init_from is None:
            raise DragkitError("--init-kimg counts the images an --init-from model has seen; give --init-from")
        if not resume and cfg.init_kimg >= cfg.kimg:
            raise DragkitError(f"--kimg {cfg.kimg:g} is the total; it must exceed --init-kimg {cfg.init_kimg:g}")
        if self.device.type == "cpu":
            # Subnormal floats make CPU kernels crawl (a GAN's small weights and
            # Adam moments produce them); flushing them changes nothing visible.
            torch.set_flush_denormal(True)
        self.cfg = cfg
        self.policy = parse_policy(cfg.diffaug)
        self.source = open_source(cfg.data, parse_range(cfg.data_range), cfg.resolution)
        res = self.source.resolution
        if cfg.batch % self.dist.world != 0:
            raise DragkitError(f"--batch {cfg.batch} must be a multiple of the number of processes {self.dist.world}")
        self.local_batch = cfg.batch // self.dist.world
        torch.manual_seed(cfg.seed)
        init_G = init_D = None
        if init_from is not None:
            init_G, init_D, cfg = self._load_init(init_from, cfg, res)
            self.cfg = cfg
        if state is not None and state.get("G_init_kwargs"):
            g_kwargs, d_kwargs = state["G_init_kwargs"], state["D_init_kwargs"]
        elif init_G is not None:
            g_kwargs = init_G.init_kwargs
            d_kwargs = init_D.init_kwargs if init_D is not None else None
        else:
            g_kwargs = d_kwargs = None
        g_kwargs = g_kwargs or dict(
            z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, img_resolution=res, img_channels=3,
            mapping_kwargs={"num_layers": cfg.map_layers, "lr_multiplier": cfg.map_lr_mult},
            synthesis_kwargs={"channel_base": cfg.g_channel_base, "channel_max": cfg.g_channel_max,
                              "architecture": "skip", "conv_clamp": 256, "num_fp16_res": 0})
        d_kwargs = d_kwargs or dict(
            img_resolution=res, img_channels=3, channel_base=cfg.d_channel_base, channel_max=cfg.d_channel_max,
            mbstd_group_size=cfg.mbstd_group, conv_clamp=256)
        group = min(int(d_kwargs.get("mbstd_group_size", 4)), self.local_batch)
        if self.local_batch % group != 0:
            raise DragkitError(f"the batch per process ({self.local_batch}) must be a multiple of the "
                               f"minibatch-std group {group}")
        self.G = Generator(**g_kwargs).to(self.device).train().requires_grad_(False)
        self.D = Discriminator(**d_kwargs).to(self.device).train().requires_grad_(False)
        if init_G is not None:
            self.G.load_state_dict(init_G.state_dict())
            if init_D is not None:
                self.D.load_state_dict(init_D.state_dict())
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        self.G_ema = copy.deepcopy(self.G).eval()
        self.gamma = cfg.resolved_gamma(res)
        self.opt_G = self._make_opt(self.G, cfg.glr, cfg.pl_interval if cfg.pl_weight > 0 else 0)
        self.opt_D = self._make_opt(self.D, cfg.dlr, cfg.r1_interval if self.gamma > 0 else 0)
        self.pl_mean = torch.zeros([], device=self.device)
        self.cur_nimg = 0
        self.iteration = 0
        self.tick = 0
        self.elapsed = 0.0  # training seconds over all sessions
        self.resumed = state is not None
        if init_G is not None:
            self.cur_nimg = int(round(cfg.init_kimg * 1000))
        if state is not None:
            try:
                self.G.load_state_dict(state["G"])
                self.D.load_state_dict(state["D"])
                self.G_ema.load_state_dict(state["G_ema"])
                self.opt_G.load_state_dict(state["opt_G"])
                self.opt_D.load_state_dict(state["opt_D"])
                # load_state_dict restores the saved learning rates; use the
                # configured ones (they differ after a retune).
                for opt, fresh in ((self.opt_G, self._make_opt(self.G, cfg.glr, cfg.pl_interval if cfg.pl_weight > 0 else 0)),
                                   (self.opt_D, self._make_opt(self.D, cfg.dlr, cfg.r1_interval if self.gamma > 0 else 0))):
                    for group, new in zip(opt.param_groups, fresh.param_groups):
                        group["lr"] = new["lr"]
            except (RuntimeError, KeyError, ValueError) as exc:
                raise CheckpointError(f"{ckpt_path}: does not fit the networks ({exc})") from None
            self.pl_mean = state["pl_mean"].to(self.device)
            self.cur_nimg = int(state["cur_nimg"])
            self.iteration = int(state["iteration"])
            self.tick = int(state["tick"])
            self.elapsed = float(state.get("elapsed", 0.0))
        self.synthesis_main: Callable[..., torch.Tensor] = self.G.synthesis
        self.D_main: Callable[..., torch.Tensor] = self.D
        if compile:
            # Double backward (R1, path length) is not supported by compiled
            # graphs, so the regularisation passes use the eager modules.
            self.synthesis_main = torch.compile(self.G.synthesis)
            self.D_main = torch.compile(self.D)
        rng = np.random.RandomState(123)
        self.grid_z = torch.from_numpy(rng.randn(cfg.grid, cfg.z_dim).astype(np.float32))

    # -- setup helpers --------------------------------------------------
    def _load_init(self, init_from: str, cfg: TrainConfig, res: int) -> tuple[Any, Any, TrainConfig]:
        """The model (and its discriminator) a fine-tuning run starts from; cfg updated to its architecture."""
        from ..formats import load_discriminator
        from ..models import load_model, resolve_model

        path = resolve_model(init_from)
        G = load_model(path)
        if G.c_dim != 0:
            raise DragkitError(f"--init-from {init_from}: a class-conditional generator (c_dim {G.c_dim}) "
                               "cannot be fine-tuned on unlabelled images")
        if (G.img_resolution, G.img_channels) != (res, 3):
            raise DragkitError(f"--init-from {init_from}: the model makes {G.img_resolution} px images with "
                               f"{G.img_channels} channels; the training data is {res} px RGB")
        if type(G.synthesis).__name__ != "SynthesisNetwork":
            raise DragkitError(f"--init-from {init_from}: only StyleGAN2 generators can be trained")
        D = load_discriminator(path)
        if D is not None and D.img_resolution != res:
            raise DragkitError(f"--init-from {init_from}: its discriminator is {D.img_resolution} px, "
                               f"the generator {res} px")
        self.log(f"dragkit train: starting from {path} (generator"
                 + (" and discriminator" if D is not None else "; no discriminator in the file, a fresh one")
                 + "; fresh optimiser states)")
        kw = G.init_kwargs
        mapping, synthesis = kw.get("mapping_kwargs") or {}, kw.get("synthesis_kwargs") or {}
        updates: dict[str, Any] = dict(
            z_dim=G.z_dim, w_dim=G.w_dim, init_from=str(path),
            map_layers=int(mapping.get("num_layers", 8)), map_lr_mult=float(mapping.get("lr_multiplier", 0.01)),
            g_channel_base=int(synthesis.get("channel_base", 32768)),
            g_channel_max=int(synthesis.get("channel_max", 512)))
        if D is not None:
            updates.update(d_channel_base=D.init_kwargs["channel_base"], d_channel_max=D.init_kwargs["channel_max"],
                           mbstd_group=D.init_kwargs["mbstd_group_size"])
        return G, D, dataclasses.replace(cfg, **updates)

    def _make_opt(self, module: torch.nn.Module, lr: float, reg_interval: int) -> torch.optim.Adam:
        beta1, beta2 = 0.0, 0.99
        if reg_interval > 0:
            ratio = reg_interval / (reg_interval + 1)
            lr, beta1, beta2 = lr * ratio, beta1**ratio, beta2**ratio
        return torch.optim.Adam(module.parameters(), lr=lr, betas=(beta1, beta2), eps=1e-8)

    def _part(self, n: int) -> slice:
        """This rank's slice of a global batch made of ``n`` samples per rank."""
        return slice(self.dist.rank * n, (self.dist.rank + 1) * n)

    def _sync(self, module: torch.nn.Module) -> None:
        """Average ``module``'s gradients over the ranks (a no-op in a single process)."""
        if self.dist.enabled:
            from .distributed import all_reduce_grads

            all_reduce_grads(module, self.dist.world)

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    # -- forward passes -------------------------------------------------
    def run_G(self, z: torch.Tensor, update_emas: bool = False, main: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``z (N, z_dim)`` -> ``(images (N, 3, R, R) float32, ws (N, num_ws, w_dim))``, with style mixing.

        ``main=False`` uses the eager modules in fp32 (regularisation passes).
        """
        ws = self.G.mapping(z, None, update_emas=update_emas)
        if self.cfg.style_mixing > 0:
            cutoff = int(torch.empty([], dtype=torch.int64).random_(1, ws.shape[1]))
            if torch.rand([]).item() >= self.cfg.style_mixing:
                cutoff = ws.shape[1]
            if cutoff < ws.shape[1]:
                # Drawn for the global batch on the CPU; this rank's slice of it.
                z2 = torch.randn([z.shape[0] * self.dist.world, z.shape[1]])[self._part(z.shape[0])]
                ws2 = self.G.mapping(z2.to(z.device), None, update_emas=False)
                ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        if not main:
            return self.G.synthesis(ws, noise_mode="random").float(), ws
        with self._autocast():
            img = self.synthesis_main(ws, noise_mode="random")
        return img.float(), ws

    def run_D(self, img: torch.Tensor, main: bool = True) -> torch.Tensor:
        """Augment (DiffAugment policy) and discriminate: ``(N, 3, R, R)`` -> logits ``(N,)`` float32."""
        if self.policy:
            img = diff_augment(img, self.policy)
        if not main:
            return self.D(img).float().flatten()
        with self._autocast():
            logits = self.D_main(img)
        return logits.float().flatten()

    def _apply(self, loss: torch.Tensor, net: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        """Back-propagate ``loss``, average ``net``'s gradients over the ranks, step ``opt``."""
        loss.backward()
        self._sync(net)
        opt.step()

    # -- one iteration --------------------------------------------------
    def step(self) -> dict[str, float]:
        """Run one minibatch iteration (G main, G reg, D main, D reg, EMA)."""
        cfg, dev = self.cfg, self.device
        it = self.iteration
        torch.manual_seed(_iteration_seed(cfg.seed, it))
        b = cfg.batch
        stats: dict[str, float] = {}
        # Every rank draws the whole global batch's random numbers (so they
        # stay in step) and uses its own slice of it.
        part = self._part(self.local_batch)
        real = to_float(self.source.batch(it, b, cfg.seed, cfg.xflip, part=part), dev)
        real = real.contiguous(memory_format=self.memory_format)
        gen_z = torch.randn([b, cfg.z_dim])[part].to(dev)
        gen_z2 = torch.randn([b, cfg.z_dim])[part].to(dev)

        # G main: non-saturating loss.
        self.G.requires_grad_(True)
        self.opt_G.zero_grad(set_to_none=True)
        img, _ = self.run_G(gen_z)
        logits = self.run_D(img)
        loss_G = F.softplus(-logits).mean()
        self._apply(loss_G, self.G, self.opt_G)
        stats["loss_G"] = loss_G.item()
        stats["score_fake"] = logits.mean().item()

        # G reg: path length, lazily.
        if cfg.pl_weight > 0 and it % cfg.pl_interval == 0:
            self.opt_G.zero_grad(set_to_none=True)
            pb = max(self.local_batch // cfg.pl_batch_shrink, 1)
            img, ws = self.run_G(gen_z[:pb], main=False)
            pl_noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
            (pl_grads,) = torch.autograd.grad((img * pl_noise).sum(), ws, create_graph=True)
            pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
            self.pl_mean.copy_(self.pl_mean.lerp(pl_lengths.mean().detach(), cfg.pl_decay))
            pl_penalty = (pl_lengths - self.pl_mean).square()
            loss = (pl_penalty * cfg.pl_weight).mean() * cfg.pl_interval + img[:, 0, 0, 0].sum() * 0
            self._apply(loss, self.G, self.opt_G)
            stats["pl_penalty"] = pl_penalty.mean().item()
        self.G.requires_grad_(False)

        # D main: fake -> 0, real -> 1.
        self.D.requires_grad_(True)
        self.opt_D.zero_grad(set_to_none=True)
        with torch.no_grad():
            img, _ = self.run_G(gen_z2, update_emas=True)
        logits_fake = self.run_D(img)
        logits_real = self.run_D(real)
        loss_D = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
        self._apply(loss_D, self.D, self.opt_D)
        stats["loss_D"] = loss_D.item()
        stats["score_real"] = logits_real.mean().item()

        # D reg: R1 on reals, lazily.
        if self.gamma > 0 and it % cfg.r1_interval == 0:
            self.opt_D.zero_grad(set_to_none=True)
            x = real.detach().requires_grad_(True)
            logits = self.run_D(x, main=False)
            (r1_grads,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
            r1_penalty = r1_grads.square().sum([1, 2, 3])
            loss = (r1_penalty * (self.gamma / 2)).mean() * cfg.r1_interval + logits.mean() * 0
            self._apply(loss, self.D, self.opt_D)
            stats["r1_penalty"] = r1_penalty.mean().item()
        self.D.requires_grad_(False)

        if self.dist.enabled:
            from .distributed import average_buffers

            average_buffers(self.G, self.dist.world)
        # EMA of G.
        ema_nimg = cfg.resolved_ema_kimg() * 1000
        if cfg.ema_rampup is not None:
            ema_nimg = min(ema_nimg, (self.cur_nimg + b) * cfg.ema_rampup)
        beta = 0.5 ** (b / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b_ in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b_)
        self.cur_nimg += b
        self.iteration += 1
        return stats

    # -- state ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        def cpu(sd: dict[str, Any]) -> dict[str, Any]:
            return {k: v.detach().cpu().clone() for k, v in sd.items()}

        return {
            "config": dataclasses.asdict(self.cfg),
            "G": cpu(self.G.state_dict()),
            "D": cpu(self.D.state_dict()),
            "G_ema": cpu(self.G_ema.state_dict()),
            "G_init_kwargs": self.G.init_kwargs,
            "D_init_kwargs": self.D.init_kwargs,
            "opt_G": _opt_to_cpu(self.opt_G.state_dict()),
            "opt_D": _opt_to_cpu(self.opt_D.state_dict()),
            "pl_mean": self.pl_mean.detach().cpu().clone(),
            "cur_nimg": self.cur_nimg,
            "iteration": self.iteration,
            "tick": self.tick,
            "elapsed": self.elapsed,
        }

    def save(self) -> Path:
        path = self.outdir / CHECKPOINT_NAME
        save_checkpoint(self.state_dict(), path)
        return path

    @property
    def kimg(self) -> float:
        return self.cur_nimg / 1000

    # -- samples --------------------------------------------------------
    @torch.no_grad()
    def sample_grid(self, path: Path) -> torch.Tensor:
        imgs = []
        for z in self.grid_z.split(16):
            imgs.append(self.G_ema(z.to(self.device), None, noise_mode="const").float().cpu())
        imgs_t = torch.cat(imgs)
        save_grid(imgs_t, path, cols=min(8, len(imgs_t)))
        return imgs_t

    def toy_oracle_rate(self, images: torch.Tensor) -> float:
        from .toy import measure

        return float(np.mean([measure(img).ok for img in images]))

    # -- the loop -------------------------------------------------------
    def train(self) -> str:
        """Train until ``cfg.kimg``; return ``'done'`` or ``'interrupted'``.

        Writes the checkpoint every ``snap_ticks`` ticks, at the end and on
        SIGINT / SIGTERM.
        """
        cfg = self.cfg
        main = self.dist.is_main  # rank 0 alone writes files
        if main:
            self.outdir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.outdir / "config.json",
                               (json.dumps(dataclasses.asdict(cfg), indent=2) + "\n").encode(), durable=True)
        total = int(round(cfg.kimg * 1000))
        if main and not self.resumed and not (self.outdir / "reals.png").exists():
            save_grid(self.source.grid(cfg.grid), self.outdir / "reals.png", cols=min(8, cfg.grid))
        procs = f" ({self.dist.world} processes of {self.local_batch})" if self.dist.enabled else ""
        self.log(f"dragkit train: {self.source.describe()}; G {_count(self.G) / 1e6:.2f} M params, "
                 f"D {_count(self.D) / 1e6:.2f} M params; batch {cfg.batch}{procs}; "
                 f"{'resuming at' if self.resumed else 'starting at'} "
                 f"{self.kimg:.1f} kimg of {cfg.kimg:g}; "
                 f"device {self.device}{' (bf16)' if self.amp else ''}")
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.kimg, initial=self.kimg, unit="kimg", dynamic_ncols=True,
                       mininterval=1.0 if sys.stderr.isatty() else 30.0,
                       bar_format="{l_bar}{bar}| {n:.3g}/{total:g} kimg [{elapsed}<{remaining}{postfix}]")
        tick_start_nimg = self.cur_nimg
        tick_start_time = time.time()
        sums: dict[str, list[float]] = {}
        status = "done"
        last_saved_nimg = self.cur_nimg
        with _StopFlag() as flag:
            while self.cur_nimg < total:
                stop = flag.stop
                if self.dist.enabled:  # every rank stops at the same iteration
                    from .distributed import any_flag

                    (stop,) = any_flag(stop, device=self.device)
                if stop:
                    status = "interrupted"
                    break
                t0 = time.time()
                stats = self.step()
                self.elapsed += time.time() - t0
                for k, v in stats.items():
                    sums.setdefault(k, []).append(v)
                bad = not all(math.isfinite(v) for v in stats.values())
                if self.dist.enabled:
                    (bad,) = any_flag(bad, device=self.device)
                if bad:
                    self.log(f"dragkit train: non-finite loss at {self.kimg:.3f} kimg: {stats}")
                    status = "diverged"
                    break
                if bar is not None:
                    bar.update(self.kimg - bar.n)
                done = self.cur_nimg >= total
                if self.cur_nimg >= tick_start_nimg + cfg.tick_kimg * 1000 or done:
                    now = time.time()
                    sec_per_kimg = (now - tick_start_time) / max((self.cur_nimg - tick_start_nimg) / 1000, 1e-9)
                    self.tick += 1
                    entry: dict[str, Any] = {
                        "tick": self.tick, "kimg": round(self.kimg, 3), "iteration": self.iteration,
                        "sec_per_kimg": round(sec_per_kimg, 3), "train_seconds": round(self.elapsed, 1),
                        "timestamp": time.time(),
                    }
                    entry.update(self._tick_means(sums))
                    if self.dist.enabled:
                        entry["ranks_in_sync"] = self._check_ranks_in_sync()
                    if not main:
                        sums = {}
                        tick_start_nimg = self.cur_nimg
                        tick_start_time = time.time()
                        continue
                    if self.tick % cfg.sample_ticks == 0 or done:
                        imgs = self.sample_grid(self.outdir / f"fakes{self.kimg:08.3f}.png")
                        if isinstance(self.source, ToyWorldSource):
                            entry["toy_oracle_rate"] = self.toy_oracle_rate(imgs)
                    with open(self.outdir / "log.jsonl", "a") as fh:
                        fh.write(json.dumps(entry) + "\n")
                    if bar is not None:
                        bar.set_postfix_str(
                            f"{sec_per_kimg:.1f} s/kimg, G {entry.get('loss_G', 0):.3f}, D {entry.get('loss_D', 0):.3f}"
                            + (f", oracle {entry['toy_oracle_rate']:.2f}" if "toy_oracle_rate" in entry else "")
                        )
                    if not sys.stderr.isatty() or bar is None:
                        self.log("tick " + json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                                                      for k, v in entry.items() if k != "timestamp"}))
                    if self.tick % cfg.snap_ticks == 0 or done:
                        self.save()
                        last_saved_nimg = self.cur_nimg
                    sums = {}
                    tick_start_nimg = self.cur_nimg
                    tick_start_time = time.time()
            if bar is not None:
                bar.close()
            if main and status != "diverged" and self.cur_nimg != last_saved_nimg:
                self.save()
        if status == "interrupted":
            self.log(f"dragkit train: stopped at {self.kimg:.3f} kimg; checkpoint written to "
                     f"{self.outdir / CHECKPOINT_NAME}; continue with --resume")
        elif status == "diverged":
            raise DragkitError(f"training diverged at {self.kimg:.3f} kimg (non-finite loss); "
                               f"the last good checkpoint is {self.outdir / CHECKPOINT_NAME}")
        return status


    def _tick_means(self, sums: dict[str, list[float]]) -> dict[str, float]:
        """The tick's mean of each statistic (over all ranks in a distributed run)."""
        means = {k: float(np.mean(v)) for k, v in sorted(sums.items())}
        if self.dist.enabled and means:
            import torch.distributed as dist

            t = torch.tensor(list(means.values()), dtype=torch.float64, device=self.device)
            dist.all_reduce(t)
            means = dict(zip(means, (t / self.dist.world).tolist()))
        return means

    def _check_ranks_in_sync(self) -> bool:
        """True when G, G_ema and D are identical on every rank; otherwise a DragkitError."""
        from .distributed import fingerprint, gather_floats

        mine = fingerprint(self.G, self.G_ema, self.D)
        if all(torch.equal(mine, other) for other in gather_floats(mine, self.dist.world)):
            return True
        raise DragkitError(f"distributed training: the ranks' networks differ at {self.kimg:.3f} kimg "
                           "(non-deterministic reduction?); stopping")


def _count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _opt_to_cpu(sd: dict[str, Any]) -> dict[str, Any]:
    out = {"param_groups": copy.deepcopy(sd["param_groups"]), "state": {}}
    for k, v in sd["state"].items():
        out["state"][k] = {n: (t.detach().cpu().clone() if torch.is_tensor(t) else t) for n, t in v.items()}
    return out
