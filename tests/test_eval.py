"""``dragkit eval``: each suite end to end on tiny settings, the report's keys, and that the numbers do not
depend on how the edits run (in this process, in local worker processes, on Ray, interrupted and resumed).

What a user would notice: a report missing its tables or pictures, a no-edit run that is not scored as
exactly the drag it did not do, numbers that change when the same seeds run on two workers or resume
after a crash, a failed edit that disappears silently.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dragkit.cli import build_parser, main
from dragkit.errors import DragkitError, SpecError

HEADSTART = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces128-headstart" / "faces128-headstart.safetensors"

REPORT_KEYS = {"format", "version", "suite", "command", "created", "dragkit", "model", "config", "runner",
               "variants", "groups", "metric_docs", "paper", "files"}
RUNNER_KEYS = {"mode", "workers", "jobs", "resumed", "retried", "failed", "worker_processes", "model_loads",
               "seconds", "host"}


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(n)


def cli(*argv: str) -> int:
    return main(["eval", *argv, "--quiet"])


def report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def by_id(out: Path) -> dict[str, dict]:
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    return {r["id"]: r for r in recs}


def numbers(rep: dict) -> list:
    """Everything in a report that must not depend on how it ran (timings excluded)."""
    return [(g["variant"], g["group"], g["metrics"]) for g in rep["groups"]]


def same_results(a: Path, b: Path) -> None:
    ra, rb = by_id(a), by_id(b)
    assert sorted(ra) == sorted(rb)
    for k in ra:
        for field in ("problem", "metrics", "trace"):
            assert ra[k][field] == rb[k][field], (k, field)


def config(suite: str, out: Path, *extra: str):
    """An EvalConfig as the command line would build it."""
    from dragkit.eval.api import EvalConfig
    from dragkit.eval.suites import get_suite

    args = build_parser().parse_args(["eval", suite, "--out", str(out), *extra])
    s = get_suite(suite)
    return EvalConfig(suite=suite, params=s.params(args), out=out, n=args.n, max_steps=args.max_steps,
                      strips=args.strips, progress=False, command="test")


# ----------------------------------------------------------------------------
# toy


def test_toy_no_edit_is_scored_as_the_drag_not_done(tmp_path):
    """With 0 steps the oracle must report each drag's full length (6-12 px) and nothing else moving."""
    out = tmp_path / "toy0"
    assert cli("toy", "--n", "3", "--max-steps", "0", "--strips", "2", "--out", str(out)) == 0
    rep = report(out)
    assert REPORT_KEYS <= set(rep) and RUNNER_KEYS <= set(rep["runner"])
    assert rep["format"] == "dragkit-eval-report" and rep["suite"] == "toy"
    recs = by_id(out)
    assert len(recs) == 6  # 3 problems (1, 2, 3 handles), each without and with the mask
    for r in recs.values():
        p, m = r["problem"], r["metrics"]
        lengths = [math.dist(p["disk"]["center"], p["disk"]["target"])]
        if p["bar"]["moved"]:
            lengths.append(math.dist(p["bar"]["center"], p["bar"]["target"]))
        assert all(6 - 1e-6 <= x <= 12 + 1e-6 for x in lengths)
        assert m["err"] == pytest.approx(max(lengths), abs=1e-4)  # the oracle reads the unedited scene exactly
        assert not m["swapped"] and not m["lost"] and m["steps"] == 0
        if not p["bar"]["moved"]:
            assert m["still_moved"] == pytest.approx(0.0, abs=1e-6)
        if r["condition"]["mask"]:
            assert m["outside_change"] == 0.0
    groups = {(g["group"]["handles"], g["group"]["mask"]): g for g in rep["groups"]}
    assert set(groups) == {(h, m) for h in (1, 2, 3, "all") for m in (False, True)}
    assert groups[("all", False)]["metrics"]["within_2px"] == 0.0
    md = (out / "report.md").read_text()
    assert "| variant | group |" in md and "1 handle, no mask" in md
    for f in rep["files"]["plots"] + rep["files"]["strips"]:
        assert (out / f).stat().st_size > 500 and f in md
    assert {"error_cdf.png", "distance_vs_step.png"} <= set(rep["files"]["plots"])
    assert len(rep["files"]["strips"]) == 6


def test_toy_drag_lands_and_the_report_says_so(tmp_path):
    """A real one-handle drag, scored by the oracle, ends within 2 px of its target."""
    out = tmp_path / "toy"
    assert cli("toy", "--n", "2", "--handles", "1", "--mask", "off", "--max-steps", "150", "--out", str(out)) == 0
    g = [g for g in report(out)["groups"] if g["group"] == {"handles": 1, "mask": False}][0]
    assert g["metrics"]["n"] == 2
    assert g["metrics"]["within_2px"] == 1.0, g["metrics"]
    assert g["metrics"]["steps_mean"] > 0 and g["timing"]["seconds_per_step"] > 0


def test_local_workers_and_an_interrupted_run_give_the_same_numbers(tmp_path):
    args = ["toy", "--n", "3", "--mask", "off", "--max-steps", "6", "--strips", "1"]
    seq, par, cut = tmp_path / "seq", tmp_path / "par", tmp_path / "cut"
    assert cli(*args, "--out", str(seq)) == 0
    assert cli(*args, "--workers", "2", "--out", str(par)) == 0
    rs, rp = report(seq), report(par)
    assert rp["runner"]["mode"] == "local" and rs["runner"]["mode"] == "sequential"
    assert numbers(rs) == numbers(rp)
    same_results(seq, par)
    # the model is loaded once per worker process, not once per edit
    assert rp["runner"]["model_loads"] == rp["runner"]["worker_processes"] <= 2
    # kill a run after its first result, leave a torn line, and run the same command again
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "dragkit", "eval", *args, "--quiet", "--out", str(cut)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = cut / "results.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if results.is_file() and results.read_text().count("\n") >= 1:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = results.read_text().count("\n")
    assert 1 <= done < 3, "the run finished before it could be interrupted"
    with open(results, "a") as fh:
        fh.write('{"id": "default/handl')  # a write cut short
    assert cli(*args, "--out", str(cut)) == 0
    rc = report(cut)
    assert rc["runner"]["resumed"] == done
    assert numbers(rc) == numbers(rs)
    same_results(seq, cut)


def test_a_failed_edit_is_retried_and_one_that_keeps_failing_is_reported(tmp_path):
    from dragkit.eval.api import EvalFailed, evaluate

    out = tmp_path / "f"
    cfg = config("toy", out, "--n", "2", "--handles", "1", "--mask", "off", "--max-steps", "3")
    cfg.retries = 1
    cfg.faults = {"default/handles=1,mask=0/0": (1, "raise"), "default/handles=1,mask=0/1": (5, "raise")}
    with pytest.raises(EvalFailed, match="1 of 2 edits failed"):
        evaluate(cfg)
    rep = report(out)
    assert [r["id"] for r in rep["runner"]["retried"]] == ["default/handles=1,mask=0/0"]
    assert rep["runner"]["retried"][0]["attempts"] == 2
    assert "InjectedFailure" in rep["runner"]["retried"][0]["errors"][0]
    assert [f["id"] for f in rep["runner"]["failed"]] == ["default/handles=1,mask=0/1"]
    assert "Failed edits" in (out / "report.md").read_text()
    assert rep["groups"][0]["metrics"]["n"] == 1  # the failed edit is not in the figures
    # the same command again runs only the failed edit
    cfg.faults = {}
    rep = evaluate(cfg)
    assert rep["runner"]["resumed"] == 1 and not rep["runner"]["failed"]
    assert rep["groups"][0]["metrics"]["n"] == 2


def test_a_dying_worker_process_is_replaced_and_its_edit_retried(tmp_path):
    from dragkit.eval.api import evaluate

    ref, out = tmp_path / "ref", tmp_path / "die"
    extra = ("--n", "2", "--handles", "1", "--mask", "off", "--max-steps", "3")
    evaluate(config("toy", ref, *extra))
    cfg = config("toy", out, *extra)
    cfg.workers = 2
    cfg.faults = {"default/handles=1,mask=0/1": (1, "exit")}
    rep = evaluate(cfg)
    # a dying process breaks the whole pool: the edit it ran, and any other in flight then, run again
    retried = {r["id"]: r for r in rep["runner"]["retried"]}
    assert "default/handles=1,mask=0/1" in retried and not rep["runner"]["failed"]
    assert all("died" in r["errors"][0] for r in retried.values())
    same_results(ref, out)


@pytest.mark.slow
def test_ray_local_instance_gives_the_same_numbers_and_retries(tmp_path):
    pytest.importorskip("ray", reason="Ray is the optional extra dragkit[ray] (installed by the dev extra)")
    from dragkit.eval.api import evaluate

    extra = ("--n", "2", "--handles", "1,2", "--mask", "off", "--max-steps", "4", "--strips", "1")
    ref, out = tmp_path / "ref", tmp_path / "ray"
    evaluate(config("toy", ref, *extra))
    cfg = config("toy", out, *extra)
    cfg.ray, cfg.workers = "auto", 2
    cfg.faults = {"default/handles=2,mask=0/1": (1, "raise")}
    rep = evaluate(cfg)
    assert rep["runner"]["mode"] == "ray"
    assert [r["id"] for r in rep["runner"]["retried"]] == ["default/handles=2,mask=0/1"]
    assert numbers(rep) == numbers(report(ref))
    same_results(ref, out)
    assert 1 <= rep["runner"]["model_loads"] == rep["runner"]["worker_processes"]


def test_a_folder_holding_another_evaluation_is_refused(tmp_path):
    out = tmp_path / "x"
    assert cli("toy", "--n", "1", "--handles", "1", "--mask", "off", "--max-steps", "0", "--out", str(out)) == 0
    before = (out / "report.json").read_bytes()
    with pytest.raises(DragkitError, match="another evaluation"):
        main(["--debug", "eval", "toy", "--n", "1", "--handles", "1", "--mask", "off", "--max-steps", "1",
              "--out", str(out)])
    assert (out / "report.json").read_bytes() == before


def test_a_run_recorded_before_an_option_existed_resumes_only_at_its_default(tmp_path):
    """A folder written by an older dragkit (its options lack ``compile``) resumes with the default, not another value."""
    def forget_compile(out: Path) -> None:
        run = json.loads((out / "run.json").read_text())
        for v in run["variants"].values():
            del v["options"]["compile"]
        (out / "run.json").write_text(json.dumps(run))

    args = ("--handles", "1", "--mask", "off", "--max-steps", "0")
    old = tmp_path / "old"
    assert cli("toy", "--n", "1", *args, "--out", str(old)) == 0
    forget_compile(old)
    assert cli("toy", "--n", "2", *args, "--out", str(old)) == 0
    assert len(by_id(old)) == 2 and report(old)["runner"]["resumed"] == 1
    # a variant that ran without compile cannot be resumed as compile=True
    swept = tmp_path / "swept"
    assert cli("toy", "--n", "1", *args, "--sweep", "compile=true", "--out", str(swept)) == 0
    forget_compile(swept)
    before = (swept / "results.jsonl").read_bytes()
    with pytest.raises(DragkitError, match="variant 'compile=True' had other settings"):
        main(["--debug", "eval", "toy", "--n", "2", *args, "--sweep", "compile=true", "--out", str(swept)])
    assert (swept / "results.jsonl").read_bytes() == before


def test_bad_variant_is_one_error_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "bad"
    assert cli("toy", "--sweep", "r9=1,2", "--out", str(out)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown drag option 'r9'" in err[0]
    assert cli("toy", "--sweep", "feature_block=7", "--out", str(out)) == 1
    assert "feature_block must be one of" in capsys.readouterr().err
    assert not (out / "report.json").exists()


# ----------------------------------------------------------------------------
# variants and the authors' loop


def test_variants_presets_sweeps_and_engines():
    from dragkit import load_model
    from dragkit.eval.variants import build_variants

    G = load_model("toy")
    vs = build_variants(G, ["default", "paper", "authors-code"], ["tracking=l1,l2", "space=w"],
                        engines=["dragkit", "authors"])
    labels = [v.label for v in vs]
    # tracking=l1 is the default's own setting: it appears once, as "default"
    assert labels == ["default", "paper", "authors-code", "tracking=l2", "space=w", "default [authors]",
                      "paper [authors]", "authors-code [authors]", "tracking=l2 [authors]", "space=w [authors]"]
    o = {v.label: v.options for v in vs}
    # 3 px at 512 is 0.19 px at 32: the one-pixel disk, at the engine's smallest radius
    assert o["paper"]["r1"] == 0.5 and o["paper"]["r2"] == 1 and o["paper"]["lr"] == 0.002
    assert o["authors-code"]["tracking"] == "l2" and o["authors-code"]["stop_distance"] == 2.0
    assert o["default"]["r1"] == 8.0 and o["default"]["feature_block"] == 16  # resolved for the 32 px model
    with pytest.raises(SpecError):
        build_variants(G, ["nope"])
    with pytest.raises(SpecError):
        build_variants(G, None, ["layers=99"])


def test_authors_engine_and_dragkit_agree_on_the_same_edit():
    """With the authors' norm (L2) and an integer handle both loops make the same drag."""
    import torch

    from dragkit import load_model
    from dragkit.drag.session import DragOptions
    from dragkit.eval.engines import run_drag

    G = load_model("toy")
    ws = G.ws_from_seed(3, psi=0.7)
    opts = DragOptions(tracking="l2")
    a = run_drag(G, ws, [(12, 14)], [(19, 16)], opts, max_steps=12, engine="authors")
    d = run_drag(G, ws, [(12, 14)], [(19, 16)], opts, max_steps=12, engine="dragkit")
    assert a.steps == d.steps and a.handles == d.handles and len(a.trace) == len(d.trace) == a.steps + 1
    # float noise only (Adam rescales the tiniest gradient components, so not bit for bit)
    assert float((a.latent - d.latent).abs().max()) < 2e-3
    assert torch.allclose(a.image, d.image, atol=5e-3)


# ----------------------------------------------------------------------------
# paired


def test_paired_reconstruction_end_to_end(tmp_path):
    pytest.importorskip("cv2", reason="the paired suite needs the optional extra dragkit[eval]")
    out0, out = tmp_path / "p0", tmp_path / "p"
    assert cli("paired", "--n", "2", "--max-steps", "0", "--strips", "1", "--out", str(out0)) == 0
    m0 = report(out0)["groups"][0]["metrics"]
    assert m0["mse"] == pytest.approx(m0["mse_noedit"]) and m0["ssim"] == pytest.approx(m0["ssim_noedit"])
    assert m0["mse_noedit"] > 0.05  # the perturbation changed the image
    for r in by_id(out0).values():
        assert 1 <= len(r["problem"]["handles"]) <= 32 and r["problem"]["flow_px"] > 0
    assert cli("paired", "--n", "2", "--max-steps", "25", "--strips", "1", "--out", str(out)) == 0
    rep = report(out)
    m = rep["groups"][0]["metrics"]
    assert m["mse"] < m["mse_noedit"] and m["ssim"] > m["ssim_noedit"], m  # the drag moved I1 towards I2
    assert rep["paper"]["rows"]["DragGAN (MSE)"][0] == 0.66
    assert any(s.startswith("strip_") for s in rep["files"]["strips"])


def test_suites_run_one_after_another_in_one_process(tmp_path):
    """The worker cache of this process must not serve one suite's state to the next (same model)."""
    pytest.importorskip("cv2", reason="the paired suite needs the optional extra dragkit[eval]")
    assert cli("toy", "--n", "1", "--handles", "1", "--mask", "off", "--max-steps", "0", "--out",
               str(tmp_path / "a")) == 0
    assert cli("paired", "--n", "1", "--max-steps", "0", "--out", str(tmp_path / "b")) == 0
    assert report(tmp_path / "b")["groups"][0]["metrics"]["n"] == 1


def test_ssim_and_mse():
    from dragkit.eval.metrics import mse, ssim

    rng = np.random.default_rng(0)
    a = rng.uniform(size=(32, 32, 3))
    assert ssim(a, a) == pytest.approx(1.0) and mse(a, a) == 0.0
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    assert 0 < ssim(a, b) < 0.9 and mse(a, b) > 0.01


# ----------------------------------------------------------------------------
# landmarks (a face model: the head-start export in ../shared, present in CI)


@pytest.mark.skipif(not HEADSTART.is_file(), reason=f"no face model at {HEADSTART}")
def test_landmarks_suite_on_a_face_model(tmp_path):
    pytest.importorskip("dlib", reason="the landmarks suite needs dragkit[faces]")
    out0, out = tmp_path / "l0", tmp_path / "l"
    assert cli("landmarks", "--model", str(HEADSTART), "--n", "2", "--handles", "1,5", "--max-steps", "0",
               "--strips", "1", "--out", str(out0)) == 0
    rep = report(out0)
    assert [g["group"]["handles"] for g in rep["groups"]] == [1, 5]
    for g in rep["groups"]:
        m = g["metrics"]
        # no edit: the re-detected landmarks are the first face's, the descriptors unchanged
        assert m["n"] == 2 and m["lost_face"] == 0
        assert m["md"] == pytest.approx(m["md_noedit"]) and m["md"] > 0
        assert m["md_512"] == pytest.approx(4 * m["md"])
        assert abs(m["fd"]) < 1e-6 and m["fd_targets"] > 0
        # per edit: an unedited face is its own person, the second face is further away
        assert m["id_dist"] < 1e-6 and m["id_kept"] == 1.0 and m["id_dist_targets"] > 0.05
    recs = list(by_id(out0).values())
    assert {len(r["problem"]["indices"]) for r in recs} == {1, 5}
    assert cli("landmarks", "--model", str(HEADSTART), "--n", "1", "--handles", "68", "--max-steps", "3",
               "--strips", "1", "--out", str(out)) == 0
    rep = report(out)
    assert rep["groups"][0]["metrics"]["steps_mean"] == 3
    assert rep["paper"]["rows"]["DragGAN"][:3] == [2.44, 3.18, 4.73]
    assert (out / rep["files"]["strips"][0]).is_file()
