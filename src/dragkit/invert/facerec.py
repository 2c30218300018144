"""dlib's face-recognition ResNet with its real weights, and face chips cut differentiably.

:func:`load_face_recognition_net` reads ``dlib_face_recognition_resnet_model_v1.dat``
(from ``face_recognition_models``; extra ``dragkit[faces]``) into
:class:`dragkit.nets.facerec.FaceRecResNet`.  :func:`chip_matrix` finds the
150 x 150 chip dlib's ``compute_face_descriptor(img, shape)`` would cut for
a face with 68 landmarks (``get_face_chip_details(shape, 150, 0.25)``), and
:func:`cut_chip` samples it from a generator image with ``grid_sample``, so
that face features can drive an optimisation.
"""
from __future__ import annotations

import functools
import math
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DragkitError
from ..nets.facerec import INPUT_SIZE, FaceRecResNet, load_params

__all__ = ["load_face_recognition_net", "chip_matrix", "cut_chip", "chip_of_uint8", "FACEREC_FILE"]

FACEREC_FILE = "dlib_face_recognition_resnet_model_v1.dat"


@functools.lru_cache(maxsize=4)
def _cached_net(device: str) -> FaceRecResNet:
    from ..dlibfaces import models_dir
    from .dlib_dnn import read_face_recognition_weights

    weights = read_face_recognition_weights(models_dir() / FACEREC_FILE)
    net = FaceRecResNet()
    try:
        load_params(net, weights.params, weights.mean_rgb)
    except ValueError as exc:
        raise DragkitError(f"{FACEREC_FILE}: {exc}") from None
    return net.eval().requires_grad_(False).to(device)


def load_face_recognition_net(device: str | torch.device = "cpu") -> FaceRecResNet:
    """The face-recognition ResNet with dlib's weights (eval mode, no parameter gradients).

    Read once per process and device (a few seconds) and shared between
    callers (threads included: it is only ever evaluated); the returned
    module must not be modified.

    Raises:
        DragkitError: the ``faces`` extra is missing, or the file is not the expected network.
    """
    return _cached_net(str(torch.device(device)))


def chip_matrix(landmarks: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """2 x 3 matrix, image pixel -> chip pixel, of dlib's 150 px face chip (padding 0.25) for 68 ``landmarks``.

    ``image_size`` is ``(width, height)`` (dlib needs a rectangle; only the landmarks matter).
    """
    from ..dlibfaces import _dlib

    dlib = _dlib()
    w, h = image_size
    pts = [dlib.point(int(round(x)), int(round(y))) for x, y in np.asarray(landmarks)]
    shape = dlib.full_object_detection(dlib.rectangle(0, 0, int(w) - 1, int(h) - 1), pts)
    d = dlib.get_face_chip_details(shape, size=INPUT_SIZE, padding=0.25)
    r = d.rect
    cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2
    ca, sa = math.cos(d.angle), math.sin(d.angle)

    def rot(x: float, y: float) -> tuple[float, float]:  # dlib's rotate_point about the rect centre
        x, y = x - cx, y - cy
        return cx + ca * x - sa * y, cy + sa * x + ca * y

    src = np.array([rot(r.left(), r.top()), rot(r.right(), r.top()), rot(r.right(), r.bottom())])
    dst = np.array([[0, 0], [d.cols - 1, 0], [d.cols - 1, d.rows - 1]], dtype=np.float64)
    # Exact affine through three point pairs (dlib's find_affine_transform).
    A = np.concatenate([src, np.ones((3, 1))], axis=1)
    return np.linalg.solve(A, dst).T


def cut_chip(img: torch.Tensor, M: np.ndarray) -> torch.Tensor:
    """Sample the 150 px chip of ``M`` (image -> chip) from ``img`` ``(N, 3, H, W)`` in [-1, 1].

    Returns ``(N, 3, 150, 150)`` on the 0-255 scale (what the ResNet takes);
    bilinear, zeros outside the image (as dlib), box-filtered first when
    the chip shrinks the image by 2x or more.  Differentiable in ``img``.
    """
    H, W = img.shape[2:]
    Minv = np.linalg.inv(np.concatenate([M, [[0, 0, 1]]]))[:2]
    scale = math.sqrt(abs(np.linalg.det(M[:, :2])))
    k = int(math.floor(1 / scale + 1e-6)) if scale < 0.5 else 1
    if k >= 2:
        img = F.avg_pool2d(img, k)
        Minv = np.array([[1 / k, 0, -(k - 1) / (2 * k)], [0, 1 / k, -(k - 1) / (2 * k)]]) @ \
            np.concatenate([Minv, [[0, 0, 1]]])
        H, W = img.shape[2:]
    u = torch.arange(INPUT_SIZE, dtype=torch.float64)
    vv, uu = torch.meshgrid(u, u, indexing="ij")
    A = torch.from_numpy(Minv)
    x = A[0, 0] * uu + A[0, 1] * vv + A[0, 2]
    y = A[1, 0] * uu + A[1, 1] * vv + A[1, 2]
    grid = torch.stack([(2 * x + 1) / W - 1, (2 * y + 1) / H - 1], dim=-1).to(img.dtype).to(img.device)
    grid = grid[None].expand(img.shape[0], -1, -1, -1)
    # Sample on the 0-255 scale so that outside the image is black, as in dlib's chips.
    return F.grid_sample((img + 1) * 127.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def chip_of_uint8(rgb: np.ndarray, M: np.ndarray) -> torch.Tensor:
    """:func:`cut_chip` of an ``(H, W, 3)`` uint8 image (returns ``(1, 3, 150, 150)``)."""
    t = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 127.5 - 1
    return cut_chip(t, M)
