"""The procedural toy world and its oracle (the ground truth of drag tests)."""
from __future__ import annotations

import math
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from dragkit.train.toy import (
    ToyObject,
    ToyScene,
    measure,
    render_scene,
    sample_scene,
    toy_image,
    write_toy_dataset,
)


def _center_error(scene: ToyScene, m) -> dict[str, float]:
    out = {}
    for shape in ("disk", "bar"):
        true, got = scene.get(shape), m.get(shape)
        assert got is not None, (shape, m.problems)
        out[shape] = math.hypot(got.center[0] - true.center[0], got.center[1] - true.center[1])
    return out


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_oracle_recovers_true_centres_within_half_a_pixel(resolution: int) -> None:
    errors, size_errors = [], []
    for i in range(60):
        arr, scene = toy_image(seed=7, index=i, resolution=resolution)
        m = measure(arr)
        assert m.ok, m.problems
        errors.extend(_center_error(scene, m).values())
        for shape in ("disk", "bar"):
            size_errors.append(abs(m.get(shape).size - scene.get(shape).size))
    assert max(errors) < 0.5
    # Far better than required in practice: the coverage centroid is exact up to uint8 rounding.
    assert float(np.mean(errors)) < 0.05
    assert max(size_errors) < 0.25


def test_oracle_tolerates_pixel_noise() -> None:
    rng = np.random.default_rng(0)
    for i in range(30):
        arr, scene = toy_image(seed=3, index=i)
        noisy = np.clip(arr.astype(np.float64) + rng.normal(0, 4.0, arr.shape), 0, 255).astype(np.uint8)
        m = measure(noisy)
        assert m.ok, m.problems
        assert max(_center_error(scene, m).values()) < 0.5


def test_shapes_are_told_apart_by_shape_not_colour() -> None:
    rng = np.random.default_rng(11)
    for i in range(20):
        scene = sample_scene(rng)
        disk, bar = scene.objects
        # Same colour for both objects, then the colours swapped.
        same = ToyScene(scene.resolution, scene.background, (disk, ToyObject("bar", bar.center, bar.size, disk.color)))
        swapped = ToyScene(scene.resolution, scene.background, (
            ToyObject("disk", disk.center, disk.size, bar.color),
            ToyObject("bar", bar.center, bar.size, disk.color),
        ))
        for sc in (same, swapped):
            m = measure(render_scene(sc))
            assert m.ok, m.problems
            assert max(_center_error(sc, m).values()) < 0.5


def test_missing_object_is_reported() -> None:
    _, scene = toy_image(seed=0, index=5)
    only_bar = ToyScene(scene.resolution, scene.background, (scene.get("bar"),))
    m = measure(render_scene(only_bar))
    assert not m.ok
    assert m.disk is None and m.bar is not None
    assert any("disk" in p for p in m.problems)

    blank = np.full((64, 64, 3), 60, dtype=np.uint8)
    m = measure(blank)
    assert not m.ok and m.disk is None and m.bar is None


def test_implausible_shapes_are_rejected() -> None:
    img = np.full((64, 64, 3), 60, dtype=np.uint8)
    img[20:24, 5:60] = (250, 30, 30)  # a bar far too long and thin: neither a disk nor the world's bar
    m = measure(img)
    assert not m.ok and m.disk is None and m.bar is None

    # A square is neither a disk nor a bar; nor is a vertical bar.
    img = np.full((64, 64, 3), 60, dtype=np.uint8)
    img[10:30, 10:30] = (250, 30, 30)
    img[34:60, 44:54] = (30, 30, 250)
    m = measure(img)
    assert not m.ok and m.disk is None and m.bar is None

    # A ring (hollow disk) and a triangle are not disks or bars.
    yy, xx = np.mgrid[0:64, 0:64]
    d = np.hypot(xx - 20, yy - 20)
    img = np.full((64, 64, 3), 60, dtype=np.uint8)
    img[(d < 12) & (d > 7)] = (30, 250, 30)
    tri = (yy > 35) & (yy < 60) & (xx > 35) & (xx - 35 < (yy - 35))
    img[tri] = (30, 30, 250)
    m = measure(img)
    assert not m.ok and m.disk is None and m.bar is None

    # A disk far too large for the world.
    big = ToyScene(64, (0.25, 0.25, 0.25), (ToyObject("disk", (31.5, 31.5), 28.0, (1.0, 0.2, 0.2)),))
    m = measure(render_scene(big))
    assert m.disk is None and not m.ok


def test_measure_accepts_pil_arrays_and_generator_tensors() -> None:
    arr, scene = toy_image(seed=1, index=2)
    as_pil = measure(Image.fromarray(arr))
    tensor = torch.from_numpy(arr).permute(2, 0, 1).float() / 127.5 - 1  # NVIDIA range [-1, 1]
    as_tensor = measure(tensor[None])
    as_float = measure(arr / 255.0)
    for m in (as_pil, as_tensor, as_float):
        assert m.ok
        assert max(_center_error(scene, m).values()) < 0.5
    with pytest.raises(ValueError):
        measure(torch.zeros(2, 3, 64, 64))


def test_scenes_are_valid_and_deterministic() -> None:
    for i in range(200):
        arr, scene = toy_image(seed=5, index=i)
        arr2, scene2 = toy_image(seed=5, index=i)
        assert scene == scene2 and np.array_equal(arr, arr2)
        disk, bar = scene.get("disk"), scene.get("bar")
        assert 8 <= disk.size <= 13 and 11 <= bar.size <= 16
        assert bar.half_extent == pytest.approx((bar.size, bar.size / 2.5))
        # inside the image with a margin, and apart from each other
        for obj in scene.objects:
            hx, hy = obj.half_extent
            assert obj.center[0] - hx >= 2 and obj.center[0] + hx <= 61.5
            assert obj.center[1] - hy >= 2 and obj.center[1] + hy <= 61.5
        hx, hy = bar.half_extent
        dx = max(abs(disk.center[0] - bar.center[0]) - hx, 0)
        dy = max(abs(disk.center[1] - bar.center[1]) - hy, 0)
        assert math.hypot(dx, dy) >= disk.size + 4 - 1e-9
    assert not np.array_equal(toy_image(5, 0)[0], toy_image(6, 0)[0])


def test_write_toy_dataset_zip_and_folder_are_deterministic(tmp_path) -> None:
    a = write_toy_dataset(tmp_path / "a.zip", 6, seed=3)
    b = write_toy_dataset(tmp_path / "b.zip", 6, seed=3)
    folder = write_toy_dataset(tmp_path / "c", 6, seed=3)
    with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
        names = sorted(za.namelist())
        assert names == sorted(zb.namelist()) == [f"{i:05d}.png" for i in range(6)] + ["dataset.json"]
        for n in names:
            assert za.read(n) == zb.read(n)
            if n.endswith(".png"):
                assert (folder / n).read_bytes() == za.read(n)
        import json

        meta = json.loads(za.read("dataset.json"))
    assert meta["count"] == 6 and meta["resolution"] == 64 and len(meta["scenes"]) == 6
    arr = np.asarray(Image.open(folder / "00004.png"))
    assert np.array_equal(arr, toy_image(3, 4)[0])
    # no temporary files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "b.zip", "c"]
