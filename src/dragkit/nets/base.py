"""What every dragkit generator shares: NVIDIA's seed contract, the recorded
constructor arguments, and the attributes dragkit itself attaches.

Both :class:`dragkit.nets.Generator` (StyleGAN2) and
:class:`dragkit.nets.StyleGAN3Generator` derive from :class:`GeneratorBase`.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

__all__ = ["GeneratorBase", "jsonable"]


class GeneratorBase(nn.Module):
    """Base of the generators: ``z_from_seed``, ``ws_from_seed``, ``device``, metadata.

    The constructor is NVIDIA's: ``(z_dim, c_dim, w_dim, img_resolution,
    img_channels, mapping_kwargs, synthesis_kwargs)``; synthesis arguments
    may also be passed flat as keywords (the stylegan3 code base's style)
    and are recorded nested in ``init_kwargs["synthesis_kwargs"]``.  A
    family defines :meth:`_build`, which makes its synthesis and mapping
    networks.

    Attributes:
        network_name: the architecture, as native checkpoints record it.
        model_name: the name the model was loaded under (a registry name or
            a file's stem; set by :func:`dragkit.models.load_model`), or None.
        dragkit_metadata: what the checkpoint reader recorded about the file
            (source format, training data, licence...); empty when built in code.
        init_kwargs: the constructor arguments, JSON-able (native checkpoints
            store them).
    """

    network_name: str = ""
    z_dim: int
    c_dim: int
    w_dim: int
    img_resolution: int
    img_channels: int
    num_ws: int

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int = 3,
        mapping_kwargs: Mapping[str, Any] | None = None,
        synthesis_kwargs: Mapping[str, Any] | None = None,
        **more_synthesis_kwargs: Any,
    ) -> None:
        super().__init__()
        self.model_name: str | None = None
        self.dragkit_metadata: dict[str, Any] = {}
        mapping = dict(mapping_kwargs or {})
        synthesis = {**dict(synthesis_kwargs or {}), **more_synthesis_kwargs}
        self.z_dim = int(z_dim)
        self.c_dim = int(c_dim)
        self.w_dim = int(w_dim)
        self.img_resolution = int(img_resolution)
        self.img_channels = int(img_channels)
        self.init_kwargs: dict[str, Any] = {
            "z_dim": self.z_dim,
            "c_dim": self.c_dim,
            "w_dim": self.w_dim,
            "img_resolution": self.img_resolution,
            "img_channels": self.img_channels,
            "mapping_kwargs": jsonable(mapping),
            "synthesis_kwargs": jsonable(synthesis),
        }
        self.synthesis, self.mapping = self._build(mapping, synthesis)
        self.num_ws = int(self.synthesis.num_ws)

    def _build(self, mapping_kwargs: dict[str, Any], synthesis_kwargs: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
        """``(synthesis, mapping)`` networks for the recorded sizes (each family defines it)."""
        raise NotImplementedError

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        update_emas: bool = False,
        **synthesis_kwargs: Any,
    ) -> torch.Tensor:
        """``z (N, z_dim)``, ``c (N, c_dim)`` -> image ``(N, C, H, W)`` in ~[-1, 1] (NVIDIA's call)."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode, update_emas=update_emas, **synthesis_kwargs)

    def z_from_seed(self, seed: int) -> torch.Tensor:
        """NVIDIA's latent for a seed: ``np.random.RandomState(seed).randn(1, z_dim)``.

        Drawn on the CPU with NumPy so a seed means the same image on every
        device.  Returns ``(1, z_dim)`` float32 on the generator's device.
        """
        z = np.random.RandomState(int(seed)).randn(1, self.z_dim)
        return torch.from_numpy(z).to(torch.float32).to(self.device)

    def ws_from_seed(self, seed: int, psi: float = 1.0, truncation_cutoff: int | None = None) -> torch.Tensor:
        """W+ codes ``(1, num_ws, w_dim)`` for a seed (unconditional models, or c = 0)."""
        z = self.z_from_seed(seed)
        c = torch.zeros([1, self.c_dim], device=z.device) if self.c_dim else None
        with torch.no_grad():
            return self.mapping(z, c, truncation_psi=psi, truncation_cutoff=truncation_cutoff)

    @property
    def img_height(self) -> int:
        """Image height in pixels (``img_resolution``)."""
        return self.img_resolution

    @property
    def img_width(self) -> int:
        """Image width in pixels (square generators: ``img_resolution``)."""
        return self.img_resolution

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``d`` with nested mappings as dicts, tuples as lists and NumPy scalars as Python numbers."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            v = jsonable(v)
        elif isinstance(v, tuple):
            v = list(v)
        elif isinstance(v, np.generic):
            v = v.item()
        out[str(k)] = v
    return out
