"""Data-parallel training over several processes (``torchrun``), with PyTorch's own engine.

``torchrun --nproc_per_node N -m dragkit train ...`` starts N copies of the
trainer; each reads ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` from the
environment, joins one process group (NCCL on CUDA, gloo on the CPU) and
trains on its own ``batch / N`` slice of every global minibatch.

Gradients are averaged with ``torch.distributed.all_reduce`` after every
backward pass, as ``DistributedDataParallel`` does, but explicitly: the R1
and path-length penalties need a double backward, which the DDP module
wrapper does not support, and G and D take turns being trained.  Every rank
then applies the same Adam update to the same weights, so the networks stay
bit-identical; the trainer checks this at every tick (:func:`fingerprint`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "setup", "all_reduce_grads", "average_buffers", "any_flag", "fingerprint", "gather_floats"]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run: ``rank`` of ``world`` (``world == 1``: not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """The process's rank from torchrun's environment variables (1 process when they are absent)."""
    return DistInfo(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                    int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join torchrun's process group (if any); returns the rank info and this rank's device.

    CUDA ranks get ``cuda:LOCAL_RANK`` and NCCL; CPU ranks gloo.
    """
    info = env_info()
    if not info.enabled:
        return info, device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def all_reduce_grads(module: torch.nn.Module, world: int) -> None:
    """Average the gradients of ``module`` over all ranks (one flat all-reduce).

    Parameters without a gradient count as zero, so every rank reduces the
    same vector; non-finite entries become 0 as in NVIDIA's trainer.
    """
    params = list(module.parameters())
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
    dist.all_reduce(flat)
    flat.div_(world)
    torch.nan_to_num(flat, nan=0.0, posinf=1e5, neginf=-1e5, out=flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def average_buffers(module: torch.nn.Module, world: int, suffix: str = "w_avg") -> None:
    """Average the running statistics (``mapping.w_avg``) over all ranks."""
    for name, buf in module.named_buffers():
        if name.endswith(suffix):
            dist.all_reduce(buf)
            buf.div_(world)


def any_flag(*flags: bool, device: torch.device) -> list[bool]:
    """Each flag OR-ed over all ranks (a stop request or a non-finite loss stops every rank together)."""
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def fingerprint(*modules: torch.nn.Module) -> torch.Tensor:
    """A float64 checksum of the modules' parameters and buffers (equal networks, equal sums)."""
    parts = []
    for m in modules:
        for t in list(m.parameters()) + list(m.buffers()):
            x = t.detach().double().flatten()
            parts.append(torch.stack([x.sum(), (x * torch.arange(1, x.numel() + 1, dtype=x.dtype,
                                                                  device=x.device)).sum()]))
    return torch.stack(parts).flatten()


def gather_floats(x: torch.Tensor, world: int) -> list[torch.Tensor]:
    """All ranks' copies of ``x`` (every rank gets the list)."""
    out = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(out, x)
    return out
