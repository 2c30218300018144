"""A baseline of the authors' drag loop, written from reading their code (not copied).

It follows the authors' DragGAN (XingangPan/DragGAN, ``viz/renderer.py``,
``Renderer._render_drag_impl``) step by step: every step runs the *full*
synthesis (image included), resizes the chosen block's features to the full
image size with ``F.interpolate(..., mode='bilinear')``, tracks each handle
with a Python loop over points (nearest neighbour in a square patch of the
resized map, tracking at the current latent before every update, the first
one included), and builds the motion loss with a loop over points (a
distance map over the whole image, ``torch.where`` for the disk,
``grid_sample`` with ``align_corners=True`` on the resized map for
``F(q + d)``).  Deliberate departures, all in the baseline's favour or
neutral: the stop-gradient is on ``F(q)`` as in the paper (the authors' fix
of 2023-07-18; same cost), the disk uses integer pixel coordinates (the
authors' ``linspace(0, h, h)`` grid is off by ``h / (h - 1)``), the
generator's weights do not require gradients (the authors' renderer leaves
them on, which makes its backward pass slower still), and the radii, norm,
learning rate and stop distance are whatever the :class:`DragOptions` say
(the authors' constants are the ``authors-code`` variant of ``dragkit eval``).

Every model family, as the authors' code would run it: images are ``H x W``
(StyleGAN-Human's ``H x H/2`` included; the map is resized to ``[H, W]``,
the disk's grid and the search window's bounds are per axis).  On a
StyleGAN3 generator the feature map is the output of synthesis layer
``feature_layer`` (the authors' ``feature_idx``), and - as in their code -
the *whole* map, margin included, is resized to the image (docs/drag.md,
*What the authors' code does instead*: features stretched away from the
centre by ``S / s``), where dragkit's engine places the layer with its
margin outside the image.  The two engines therefore agree on StyleGAN2
models only.

``benchmarks/bench_drag.py`` times it against :class:`dragkit.DragSession`;
``dragkit eval --engine authors`` scores it on the same edits.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..drag.options import image_size


__all__ = ["AuthorsLoop"]


class AuthorsLoop:
    """The authors' drag step (see the module docstring).

    Args:
        G: a :class:`dragkit.nets.Generator` (square or ``H x H/2``) or a
            :class:`dragkit.nets.StyleGAN3Generator`.
        ws0: ``(1, num_ws, w_dim)`` starting W+ codes.
        points, targets: handles and targets, ``[x, y]`` pixels.
        opts: *resolved* :class:`dragkit.drag.session.DragOptions`
            (``DragOptions(...).resolved(G)``).
        mask: optional ``(H, W)`` bool, True = flexible.
    """

    def __init__(
        self, G: Any, ws0: torch.Tensor, points: Sequence[Sequence[float]], targets: Sequence[Sequence[float]],
        opts: Any, mask: np.ndarray | None = None,
    ) -> None:
        self.G = G
        self.k = opts.layers
        self.w0 = ws0.detach().clone()
        if opts.space == "w":  # one shared code over the optimised layers
            self.w = ws0[:, :1].detach().clone().requires_grad_(True)
        else:
            self.w = ws0[:, : self.k].detach().clone().requires_grad_(True)
        self.optim = torch.optim.Adam([self.w], lr=opts.lr)
        # the authors keep points as [y, x]
        self.points = [[float(p[1]), float(p[0])] for p in points]
        self.targets = [[float(t[1]), float(t[0])] for t in targets]
        self.r1, self.r2 = opts.r1, opts.r2
        # a StyleGAN2 block resolution, or a StyleGAN3 layer (resolved: exactly one is set)
        self.block, self.layer = opts.feature_block, opts.feature_layer
        self.img_h, self.img_w = image_size(G)
        self.l2 = opts.tracking == "l2"
        self.noise_mode = opts.noise_mode
        dev = ws0.device
        self.mask = None if mask is None or mask.all() or not mask.any() else torch.from_numpy(mask).float().to(dev)
        self.lambda_mask = opts.lambda_mask
        self.feat_refs: list[torch.Tensor] | None = None
        self.stop_d = opts.stop_distance_at(len(points))

    def _ws(self) -> torch.Tensor:
        w = self.w if self.w.shape[1] == self.k else self.w.expand(-1, self.k, -1)
        return torch.cat([w, self.w0[:, self.k:]], dim=1)

    def _features(self):
        G, h, w = self.G, self.img_h, self.img_w
        which = {"feature_layers": [self.layer]} if self.layer is not None else {"feature_blocks": [self.block]}
        img, feats = G.synthesis.run(self._ws(), noise_mode=self.noise_mode, return_image=True, **which)
        feat = feats[self.layer if self.layer is not None else self.block]
        feat_resize = F.interpolate(feat, [h, w], mode="bilinear", align_corners=False)
        if self.feat_refs is None:
            self.feat0_resize = F.interpolate(feat.detach(), [h, w], mode="bilinear", align_corners=False)
            self.feat_refs = []
            for point in self.points:
                py, px = round(point[0]), round(point[1])
                self.feat_refs.append(self.feat0_resize[:, :, py, px])
        return feat_resize

    def _track(self, feat_resize: torch.Tensor) -> None:
        h, w = self.img_h, self.img_w
        assert self.feat_refs is not None
        with torch.no_grad():
            for j, point in enumerate(self.points):
                r = self.r2
                up = max(int(point[0]) - r, 0)
                down = min(int(point[0]) + r + 1, h)
                left = max(int(point[1]) - r, 0)
                right = min(int(point[1]) + r + 1, w)
                patch = feat_resize[:, :, up:down, left:right]
                diff = patch - self.feat_refs[j].reshape(1, -1, 1, 1)
                dist = torch.linalg.norm(diff, dim=1) if self.l2 else diff.abs().sum(dim=1)
                _, idx = torch.min(dist.view(1, -1), -1)
                width = right - left
                self.points[j] = [idx.item() // width + up, idx.item() % width + left]

    def step(self) -> bool:
        """Track, test the stop rule, and (unless it is met) one Adam step. Returns True when stopped."""
        h, w = self.img_h, self.img_w
        dev = self.w0.device
        feat_resize = self._features()
        self._track(feat_resize)
        X = torch.arange(h, dtype=torch.float32, device=dev)
        Y = torch.arange(w, dtype=torch.float32, device=dev)
        xx, yy = torch.meshgrid(X, Y, indexing="ij")
        loss = 0
        stop = True
        for j, point in enumerate(self.points):
            direction = torch.tensor([self.targets[j][1] - point[1], self.targets[j][0] - point[0]], device=dev)
            if torch.linalg.norm(direction) > self.stop_d:
                stop = False
            if torch.linalg.norm(direction) > 1:
                distance = ((xx - point[0]) ** 2 + (yy - point[1]) ** 2) ** 0.5
                relis, reljs = torch.where(distance < self.r1)
                direction = direction / (torch.linalg.norm(direction) + 1e-7)
                gridh = (relis + direction[1]) / (h - 1) * 2 - 1
                gridw = (reljs + direction[0]) / (w - 1) * 2 - 1
                grid = torch.stack([gridw, gridh], dim=-1).unsqueeze(0).unsqueeze(0)
                target = F.grid_sample(feat_resize.float(), grid, align_corners=True).squeeze(2)
                loss = loss + F.l1_loss(feat_resize[:, :, relis, reljs].detach(), target)
        if self.mask is not None and self.lambda_mask > 0:
            fixed = (1 - self.mask).reshape(1, 1, h, w)
            loss = loss + self.lambda_mask * F.l1_loss(feat_resize * fixed, self.feat0_resize * fixed)
        if not stop and isinstance(loss, torch.Tensor) and loss.requires_grad:
            self.optim.zero_grad()
            loss.backward()
            self.optim.step()
        return stop

    def track(self) -> None:
        """Track the handles on the current latent without optimising (the final reading)."""
        with torch.no_grad():
            self._track(self._features())

    def handles_xy(self) -> list[tuple[float, float]]:
        """Current handles as ``[x, y]``."""
        return [(float(p[1]), float(p[0])) for p in self.points]

    def distances(self) -> list[float]:
        """``|handle - target|`` per point, pixels."""
        return [float(np.hypot(t[0] - p[0], t[1] - p[1])) for p, t in zip(self.points, self.targets)]

    def latent(self) -> torch.Tensor:
        """The current W+ codes ``(1, num_ws, w_dim)`` (detached)."""
        return self._ws().detach()
