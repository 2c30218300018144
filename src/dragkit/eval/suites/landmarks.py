"""``landmarks``: the paper's face landmark manipulation (Pan et al. 2023, Sec. 4.2, Table 1).

Problem ``i``: two random faces of the model (seeds ``s1``, ``s2``, psi 0.7;
the next seeds are tried while dlib's HOG detector finds no face in
either, up-sampling the image once if needed).  dlib's 68 landmarks of face
1 are the handles, those of face 2 the targets; for 1 and 5 handles a seeded
random subset of the 68 (the same face pair for all handle counts).  Face 1
is dragged for at most 300 steps (the paper's stop rule: 1 px up to 5
points, 2 px for 68).  Scores:

* **MD**: mean distance (px) of the re-detected landmarks of the edited
  face (the dragged subset) to their targets, beside the no-edit MD (face
  1's landmarks against the targets).  The edited face is re-detected; when
  the detector no longer finds it, the landmarks are read in face 1's box
  and the edit counts in ``lost_face``.  ``md_512`` scales MD to a 512 px
  image (x 512 / H), the paper's resolution.
* **seconds per edit**.
* **FD**, a realism proxy in place of FID (no Inception weights here): the
  Frechet distance between dlib's 128-d face-recognition descriptors of
  the edited faces and of the original faces 1 (one figure per group, over
  its edits; :func:`dragkit.dlibfaces.frechet_distance`), beside
  ``fd_targets`` = the same distance between faces 1 and faces 2 (two sets
  of different random faces: the scale of "another face").

Needs ``dragkit[faces]`` (dlib-bin, face-recognition-models).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ...drag.options import image_size
from ...errors import SpecError
from .. import metrics as M
from ..engines import run_drag
from .common import DRAG_METRIC_DOCS, SuiteBase, aggregate_drag, record

NAME = "landmarks"


def _detect(fm: Any, img: np.ndarray, near: Any | None = None) -> Any | None:
    """The face rectangle in ``img`` (the one overlapping ``near`` most, else the largest), or None."""
    rects = fm.detect(img, 0) or fm.detect(img, 1)
    if not rects:
        return None
    if near is not None:
        def overlap(r):
            w = max(0, min(r.right(), near.right()) - max(r.left(), near.left()))
            h = max(0, min(r.bottom(), near.bottom()) - max(r.top(), near.top()))
            return w * h
        return max(rects, key=overlap)
    return max(rects, key=lambda r: r.width() * r.height())


def _box(r: Any) -> list[int]:
    return [int(r.left()), int(r.top()), int(r.right()), int(r.bottom())]


def make_problem(G: Any, fm: Any, params: dict[str, Any], index: int) -> dict[str, Any]:
    """Problem ``index``: the face pair, their boxes and landmarks, and the first image's codes."""
    from ...utils import tensor_to_uint8

    dev = next(G.parameters()).device
    H, W = image_size(G)
    top = np.array([W - 1, H - 1], dtype=np.float64)
    for attempt in range(params["max_attempts"]):
        s1 = int(params["first_seed"]) + 1000 * int(index) + 2 * attempt
        s2 = s1 + 1
        w1 = G.ws_from_seed(s1, psi=params["psi"]).to(dev)
        with torch.no_grad():
            i1 = tensor_to_uint8(G.synthesis(w1))
            i2 = tensor_to_uint8(G.synthesis(G.ws_from_seed(s2, psi=params["psi"]).to(dev)))
        r1, r2 = _detect(fm, i1), _detect(fm, i2)
        if r1 is None or r2 is None:
            continue
        l1 = np.clip(fm.landmarks(i1, r1), 0, top)  # [x, y] inside the W x H image
        l2 = np.clip(fm.landmarks(i2, r2), 0, top)
        return {"seed": s1, "other_seed": s2, "attempts": attempt + 1, "box1": _box(r1), "box2": _box(r2),
                "landmarks1": l1.tolist(), "landmarks2": l2.tolist(), "_w1": w1, "_i1": i1, "_i2": i2, "_r1": r1,
                "_r2": r2}
    raise SpecError(f"landmarks suite: dlib found no face in {params['max_attempts']} sample pairs for problem "
                    f"{index} (is it a face model?)")


def subset(index: int, count: int, first_seed: int) -> list[int]:
    """Which of the 68 landmarks problem ``index`` drags with ``count`` handles (sorted)."""
    if count >= 68:
        return list(range(68))
    rng = np.random.default_rng([int(first_seed), int(index), int(count)])
    return sorted(int(i) for i in rng.choice(68, size=count, replace=False))


#: dlib's own threshold: descriptors closer than this are one person.
SAME_PERSON = 0.6


def identity_metrics(ms: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-edit identity from the recorded descriptors: mean distance edited -> original face,
    the share below :data:`SAME_PERSON`, and the mean distance original -> target face."""
    if not ms:
        return {"id_dist": None, "id_kept": None, "id_dist_targets": None}
    orig = np.array([m["desc_orig"] for m in ms], dtype=np.float64)
    d = np.linalg.norm(np.array([m["desc_edit"] for m in ms], dtype=np.float64) - orig, axis=1)
    d_t = np.linalg.norm(np.array([m["desc_target"] for m in ms], dtype=np.float64) - orig, axis=1)
    return {"id_dist": float(d.mean()), "id_kept": float((d < SAME_PERSON).mean()), "id_dist_targets": float(d_t.mean())}


class LandmarksSuite(SuiteBase):
    name = NAME
    default_model = "faces128"
    default_max_steps = 300
    columns = [
        ("n", "edits", "d"), ("md", "MD px", ".2f"), ("md_noedit", "no edit MD px", ".2f"),
        ("md_512", "MD at 512 px", ".2f"), ("md_noedit_512", "no edit at 512 px", ".2f"),
        ("lost_face", "face lost", "d"), ("fd", "FD (dlib)", ".3f"), ("fd_targets", "FD faces 1 vs 2", ".3f"),
        ("id_dist", "identity dist", ".3f"), ("id_kept", "same person", ".0%"), ("id_dist_targets", "dist faces 1 vs 2", ".3f"),
        ("reached", "reached", ".0%"), ("steps_mean", "steps", ".1f"),
    ]
    metric_docs = {
        "n": "edits", "md": "mean distance (px) of the re-detected dragged landmarks to their targets",
        "md_noedit": "the same for the unedited face 1", "md_512": "md x 512 / H", "md_noedit_512": "md_noedit x 512 / H",
        "lost_face": "edited faces the detector no longer found (landmarks read in face 1's box)",
        "fd": "Frechet distance between dlib descriptors of edited faces and original faces 1 (realism proxy)",
        "fd_targets": "Frechet distance between dlib descriptors of faces 1 and faces 2 (scale of another face)",
        "id_dist": "per edit: Euclidean distance between dlib's 128-d descriptors of the edited face and of the "
                   "original face 1, averaged (identity kept: small)",
        "id_kept": f"share of edits whose identity distance is below {SAME_PERSON} (dlib's same-person threshold)",
        "id_dist_targets": "the same distance between faces 1 and faces 2 (the scale of another person)",
        **DRAG_METRIC_DOCS,
    }
    paper = {
        "caption": "Paper, Table 1 (FFHQ StyleGAN2 at 512 px, one RTX 3090; MD in px at 512 px; FID with Inception, "
                   "not comparable with our dlib FD)",
        "columns": ["MD 1 pt", "MD 5 pts", "MD 68 pts", "FID", "time (s)"],
        "rows": {"no edit": [12.93, 11.66, 16.02, None, None], "UserControllableLT": [11.64, 10.41, 10.15, 25.32, 0.03],
                 "DragGAN w/ RAFT tracking": [13.43, 13.59, 15.92, 51.37, 15.4],
                 "DragGAN w/ PIPs tracking": [2.98, 4.83, 5.30, 31.87, 6.6], "DragGAN": [2.44, 3.18, 4.73, 9.28, 2.0]},
    }

    @staticmethod
    def params(args: Any) -> dict[str, Any]:
        counts = [int(x) for x in (args.handles or "1,5,68").split(",") if x.strip()]
        if not counts or any(not 1 <= c <= 68 for c in counts):
            raise SpecError(f"--handles for the landmarks suite: counts from 1 to 68, got {args.handles!r}")
        return {"handles": counts, "first_seed": int(args.first_seed if args.first_seed is not None else 0),
                "psi": float(args.psi), "max_attempts": 20}

    @staticmethod
    def jobs(params: dict[str, Any], n: int) -> list[tuple[int, dict[str, Any]]]:
        return [(i, {"handles": k}) for k in params["handles"] for i in range(n)]

    @staticmethod
    def group(condition: dict[str, Any]) -> dict[str, Any]:
        return {"handles": condition["handles"]}

    @staticmethod
    def setup(G: Any, params: dict[str, Any]) -> Any:
        from ...dlibfaces import face_models

        return face_models()

    @staticmethod
    def run(G: Any, state: Any, params: dict[str, Any], index: int, condition: dict[str, Any], variant: Any,
            max_steps: int, images: bool) -> dict[str, Any]:
        from ...utils import tensor_to_uint8

        fm = state
        H = int(G.img_resolution)
        prob = make_problem(G, fm, params, index)
        w1, i1, i2, r1, r2 = (prob.pop(k) for k in ("_w1", "_i1", "_i2", "_r1", "_r2"))
        idx = subset(index, condition["handles"], params["first_seed"])
        l1, l2 = np.asarray(prob["landmarks1"]), np.asarray(prob["landmarks2"])
        handles, targets = l1[idx].tolist(), l2[idx].tolist()
        out = run_drag(G, w1, handles, targets, variant.drag_options(), max_steps=max_steps, engine=variant.engine)
        after = tensor_to_uint8(out.image)
        ra = _detect(fm, after, near=r1)
        lost = ra is None
        la = fm.landmarks(after, ra if ra is not None else r1)
        md = float(np.mean(np.linalg.norm(la[idx] - l2[idx], axis=1)))
        md0 = float(np.mean(np.linalg.norm(l1[idx] - l2[idx], axis=1)))
        d_orig = fm.descriptor_of(i1, r1)
        d_edit = fm.descriptor_of(after, ra if ra is not None else r1)
        d_target = fm.descriptor_of(i2, r2)
        prob.pop("landmarks1"), prob.pop("landmarks2")
        prob.update({"indices": idx, "handles": handles, "targets": targets})
        scores = {
            "md": round(md, 6), "md_noedit": round(md0, 6), "md_512": round(md * 512 / H, 6),
            "md_noedit_512": round(md0 * 512 / H, 6), "lost_face": lost,
            "landmarks_after": np.round(la[idx], 3).tolist(),
            "desc_orig": np.round(d_orig, 7).tolist(), "desc_edit": np.round(d_edit, 7).tolist(),
            "desc_target": np.round(d_target, 7).tolist(),
        }
        return record(prob, scores, out, {"before": i1, "after": after, "target": i2} if images else None)

    @staticmethod
    def aggregate(results: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
        ms = [r["metrics"] for r in results]
        metrics, timing = aggregate_drag(results, {
            "md": M.mean(m["md"] for m in ms), "md_noedit": M.mean(m["md_noedit"] for m in ms),
            "md_512": M.mean(m["md_512"] for m in ms), "md_noedit_512": M.mean(m["md_noedit_512"] for m in ms),
            "lost_face": sum(m["lost_face"] for m in ms),
            **identity_metrics(ms),
        })
        metrics.update(LandmarksSuite.set_metrics(results))
        return metrics, timing

    @staticmethod
    def set_metrics(results: list[dict[str, Any]]) -> dict[str, Any]:
        from ...dlibfaces import frechet_distance

        if len(results) < 2:
            return {"fd": None, "fd_targets": None}
        orig = np.array([r["metrics"]["desc_orig"] for r in results])
        edit = np.array([r["metrics"]["desc_edit"] for r in results])
        target = np.array([r["metrics"]["desc_target"] for r in results])
        return {"fd": frechet_distance(edit, orig), "fd_targets": frechet_distance(orig, target)}

    @staticmethod
    def error_values(results: list[dict[str, Any]]) -> tuple[str, list[float]]:
        return "MD (px) of re-detected landmarks", [r["metrics"]["md"] for r in results]

    @staticmethod
    def baseline_values(results: list[dict[str, Any]]) -> list[float]:
        return [r["metrics"]["md_noedit"] for r in results]

    @staticmethod
    def strip_points(result: dict[str, Any]) -> tuple[list, list, list]:
        p = result["problem"]
        return p["handles"], p["targets"], result["metrics"]["landmarks_after"]


SUITE = LandmarksSuite()
