"""The generator the drag engine expects, as a :class:`typing.Protocol`.

:class:`dragkit.nets.Generator` (StyleGAN2, square or not) satisfies it.
A new model family works with :class:`~dragkit.drag.session.DragSession`
once its generator has these members (``docs/architecture.md``); windowed
feature runs (``synthesis.run_window``) are optional - without them every
step runs the blocks whole.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Protocol

import torch

__all__ = ["DragGenerator", "DragSynthesis"]


class DragSynthesis(Protocol):
    """``G.synthesis``: W+ codes -> image, with access to block outputs."""

    num_ws: int
    w_dim: int
    block_resolutions: list[int]

    def __call__(self, ws: torch.Tensor, noise_mode: str = ...) -> torch.Tensor:
        """``ws (N, num_ws, w_dim)`` -> image ``(N, C, H, W)`` in ~[-1, 1]."""
        ...

    def run(
        self, ws: torch.Tensor, noise_mode: str = ..., feature_blocks: Iterable[int] = ..., return_image: bool = ...,
    ) -> tuple[torch.Tensor | None, dict[int, torch.Tensor]]:
        """Image (or None) and ``{res: (N, C_res, h, w)}`` block outputs."""
        ...

    def block_channels(self, res: int) -> int:
        """Feature channels of block ``b{res}``."""
        ...

    def block_size(self, res: int) -> tuple[int, int]:
        """``(height, width)`` of block ``b{res}``'s map."""
        ...


class DragGenerator(Protocol):
    """A generator the drag engine can edit (NVIDIA's attribute names)."""

    z_dim: int
    w_dim: int
    num_ws: int
    img_resolution: int
    synthesis: DragSynthesis
    model_name: str | None

    @property
    def img_height(self) -> int: ...

    @property
    def img_width(self) -> int: ...

    def ws_from_seed(self, seed: int, psi: float = ..., truncation_cutoff: int | None = ...) -> torch.Tensor:
        """W+ codes ``(1, num_ws, w_dim)`` for a seed."""
        ...

    def parameters(self, recurse: bool = ...) -> Iterator[torch.nn.Parameter]: ...

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor: ...
