"""``report.json`` and ``report.md`` of an evaluation, with matplotlib plots and before/after strips.

``report.json`` keys (format ``dragkit-eval-report``, version 1):

* ``suite``, ``command``, ``created`` (UTC), ``dragkit``;
* ``model``: ``name``, ``path``, ``resolution`` (``H``), ``width`` and
  ``height`` of its images (``W x H``: StyleGAN-Human's are ``H/2 x H``),
  ``sha256`` (of its files);
* ``config``: ``n``, ``max_steps``, ``threads``, ``device``, ``params`` (the suite's);
* ``runner``: ``mode`` (sequential / local / ray), ``workers``, ``jobs``,
  ``resumed`` (results found in ``results.jsonl``), ``retried`` and
  ``failed`` (``[{id, attempts, errors}]``), ``worker_processes``,
  ``model_loads`` (at most one per worker process), ``seconds``, ``host``;
* ``variants``: ``[{label, engine, options}]`` (options resolved);
* ``groups``: ``[{variant, group, metrics, timing}]``: one row per variant
  and group (toy: handles x mask, plus ``all`` rows per mask; landmarks:
  handles); ``metrics`` are identical for the same seeds however the run
  was executed, ``timing`` (seconds) is not;
* ``metric_docs``: what each metric means; ``paper``: the paper's figures
  where the protocol matches (or null);
* ``files``: the plots and strips written beside the report.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..utils import atomic_path, atomic_write_bytes
from . import metrics as M

__all__ = ["build_report", "write_report", "FORMAT"]

FORMAT = "dragkit-eval-report"


def _group_label(g: dict[str, Any]) -> str:
    if not g:
        return "all"
    parts = []
    for k, v in g.items():
        if k == "mask":
            parts.append("mask" if v else "no mask")
        elif k == "handles":
            parts.append(f"{v} handle{'s' if v != 1 else ''}" if v != "all" else "all handles")
        else:
            parts.append(f"{k}={v}")
    return ", ".join(parts)


def build_report(suite: Any, meta: dict[str, Any], variants: list[dict], jobs: list[Any],
                 records: dict[str, dict]) -> tuple[dict[str, Any], dict[tuple, list[dict]]]:
    """The report dict and the ok results by ``(variant label, group json)`` in job order."""
    by: dict[tuple, list[dict]] = {}
    order: list[tuple] = []
    for job in jobs:
        rec = records.get(job.id)
        label = variants[job.variant]["label"]
        g = suite.group(job.condition)
        key = (label, json.dumps(g, sort_keys=True))
        if key not in by:
            by[key] = []
            order.append(key)
        if rec is not None and rec.get("status") == "ok":
            by[key].append(rec)
    groups = []
    for label in [v["label"] for v in variants]:
        keys = [k for k in order if k[0] == label]
        for key in keys:
            metrics, timing = suite.aggregate(by[key]) if by[key] else ({"n": 0}, {})
            groups.append({"variant": label, "group": json.loads(key[1]), "metrics": metrics, "timing": timing})
        # toy: a row over all handle counts for each mask state
        masks = sorted({json.loads(k[1]).get("mask") for k in keys if "handles" in json.loads(k[1])},
                       key=lambda m: (m is None, m))
        if len(keys) > 1 and suite.name == "toy":
            for m in masks:
                rs = [r for k in keys if json.loads(k[1]).get("mask") == m for r in by[k]]
                if rs:
                    metrics, timing = suite.aggregate(rs)
                    groups.append({"variant": label, "group": {"handles": "all", "mask": m}, "metrics": metrics,
                                   "timing": timing})
    report = {
        "format": FORMAT, "version": 1, **meta, "variants": variants, "groups": groups,
        "metric_docs": suite.metric_docs, "paper": suite.paper,
    }
    return report, by


def _fmt(v: Any, f: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return "inf"
    if f == "d":
        return str(int(v))
    if f == "ms":
        return f"{1000 * v:.1f}"
    return format(v, f)


def markdown_tables(suite: Any, report: dict[str, Any]) -> str:
    """The result tables of a report as Markdown (also used for docs/RESULTS.md)."""
    cols = suite.columns + suite.timing_columns
    head = "| variant | group | " + " | ".join(h for _, h, _ in cols) + " |"
    sep = "|" + "---|" * (len(cols) + 2)
    lines = [head, sep]
    for g in report["groups"]:
        vals = {**g["metrics"], **g["timing"]}
        lines.append(f"| {g['variant']} | {_group_label(g['group'])} | "
                     + " | ".join(_fmt(vals.get(k), f) for k, _, f in cols) + " |")
    return "\n".join(lines)


def _paper_table(paper: dict[str, Any] | None) -> str:
    if not paper:
        return ""
    lines = [f"*{paper['caption']}*", "", "| method | " + " | ".join(paper["columns"]) + " |",
             "|" + "---|" * (len(paper["columns"]) + 1)]
    for name, row in paper["rows"].items():
        lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{v:g}" for v in row) + " |")
    return "\n".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-").lower() or "x"


def _size_text(model: dict[str, Any]) -> str:
    """``128 px`` for a square model, ``256x512 px (width x height)`` otherwise (older reports: the resolution)."""
    h, w = model.get("height", model["resolution"]), model.get("width", model["resolution"])
    return f"{h} px" if h == w else f"{w}x{h} px (width x height)"


def _save_plot(plt: Any, fig: Any, ax: Any, path: Path, title: str, xlabel: str, ylabel: str, legend: str) -> str:
    """Label, lay out and write one plot (atomically); returns its file name."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc=legend)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path.name


def _plots(suite: Any, report: dict[str, Any], by: dict[tuple, list[dict]], out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    files = []
    series = []
    for (label, gkey), recs in by.items():
        if recs:
            series.append((f"{label}, {_group_label(json.loads(gkey))}" if json.loads(gkey) else label, recs))
    if not series:
        return []
    # error distribution: one CDF line per (variant, group)
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=90)
    what = ""
    for name, recs in series:
        what, vals = suite.error_values(recs)
        if vals:
            v = np.sort(np.asarray(vals, dtype=np.float64))
            line = ax.step(v, np.arange(1, len(v) + 1) / len(recs), where="post", label=name, lw=1.2)[0]
            base = suite.baseline_values(recs)
            if base:
                b = np.sort(np.asarray(base, dtype=np.float64))
                ax.step(b, np.arange(1, len(b) + 1) / len(recs), where="post", ls="--", lw=0.9,
                        color=line.get_color(), label=f"{name}: no edit")
    ax.set_ylim(0, 1.02)
    files.append(_save_plot(plt, fig, ax, out / "error_cdf.png", f"{report['suite']}: error distribution",
                            what, "share of edits at or below", "lower right"))
    # engine's handle distance vs step: median and quartiles over edits (a finished edit keeps its last value)
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=90)
    for name, recs in series:
        traces = [r["trace"] for r in recs if r.get("trace")]
        if not traces:
            continue
        L = max(len(t) for t in traces)
        a = np.array([t + [t[-1]] * (L - len(t)) for t in traces], dtype=np.float64)
        med = np.median(a, axis=0)
        ax.plot(np.arange(L), med, label=name, lw=1.2)
        ax.fill_between(np.arange(L), np.percentile(a, 25, axis=0), np.percentile(a, 75, axis=0), alpha=0.12)
    ax.set_ylim(bottom=0)
    files.append(_save_plot(plt, fig, ax, out / "distance_vs_step.png",
                            f"{report['suite']}: tracked distance vs step (median, quartiles)", "step",
                            "mean handle-target distance (px)", "upper right"))
    return files


def _strips(suite: Any, by: dict[tuple, list[dict]], out: Path, count: int) -> list[str]:
    """One PNG per (variant, group): columns = examples; rows = before, after, [target]; each cell the
    image (``W x H``) scaled by a whole factor to about 128 px high."""
    from PIL import Image

    from ..drag.render import annotate

    files = []
    for (label, gkey), recs in by.items():
        recs = [r for r in recs if "images" in r][:count]
        if not recs:
            continue
        rows = ["before", "after"] + (["target"] if "target" in recs[0]["images"] else [])
        first = M.from_png_b64(recs[0]["images"]["before"])
        w0, h0 = first.size  # W x H cells: a non-square model's images keep their shape
        scale = max(1, 128 // h0)
        cw, ch = w0 * scale, h0 * scale
        pad = 2
        strip = Image.new("RGB", (len(recs) * (cw + pad) + pad, len(rows) * (ch + pad) + pad), (255, 255, 255))
        for c, r in enumerate(recs):
            handles, targets, finals = suite.strip_points(r)
            for k, row in enumerate(rows):
                img = M.from_png_b64(r["images"][row]).resize((cw, ch), Image.NEAREST)
                s = lambda pts: [[(x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5] for x, y in pts]  # noqa: E731
                if row == "before":
                    img = annotate(img, s(handles), s(targets))
                elif row == "after":
                    img = annotate(img, s(finals), s(targets))
                strip.paste(img, (pad + c * (cw + pad), pad + k * (ch + pad)))
        name = f"strip_{_slug(label)}_{_slug(_group_label(json.loads(gkey)))}.png"
        with atomic_path(out / name) as tmp:
            strip.save(tmp, format="PNG", optimize=True)
        files.append(name)
    return files


def write_report(suite: Any, report: dict[str, Any], by: dict[tuple, list[dict]], out: Path, strips: int) -> dict:
    """Write the plots, strips, ``report.json`` and ``report.md`` into ``out``; returns the report."""
    plots = _plots(suite, report, by, out)
    strip_files = _strips(suite, by, out, strips) if strips > 0 else []
    report["files"] = {"markdown": "report.md", "results": "results.jsonl", "plots": plots, "strips": strip_files}
    atomic_write_bytes(out / "report.json", (json.dumps(report, indent=1, allow_nan=False) + "\n").encode())
    r = report
    md = [f"# dragkit eval {r['suite']}", "",
          f"`{r['command']}`", "",
          f"Model `{r['model']['name']}` ({_size_text(r['model'])}, sha256 {r['model']['sha256'][:12]}), "
          f"{r['config']['n']} problems, at most {r['config']['max_steps']} steps, device {r['config']['device']}, "
          f"{r['config']['threads']} torch thread(s) per worker. Run: {r['runner']['mode']}, "
          f"{r['runner']['workers']} worker(s), {r['runner']['jobs']} edits ({r['runner']['resumed']} resumed from "
          f"results.jsonl), {len(r['runner']['retried'])} retried, {len(r['runner']['failed'])} failed; "
          f"{r['runner']['seconds']:.0f} s on {r['runner']['host']['cpus']} CPUs, load average "
          f"{r['runner']['host']['load_average']} at the start (timings on a shared machine vary).", "",
          "## Results", "", markdown_tables(suite, r), ""]
    if r["runner"]["failed"]:
        md += ["**Failed edits** (not in the figures):", ""]
        md += [f"- `{f['id']}` after {f['attempts']} attempts: {f['errors'][-1]}" for f in r["runner"]["failed"]]
        md.append("")
    if r.get("paper"):
        md += ["## The paper's figures", "", _paper_table(r["paper"]), ""]
    md += ["## Variants", "", "| variant | engine | options |", "|---|---|---|"]
    md += [f"| {v['label']} | {v['engine']} | " + ", ".join(f"{k}={v['options'][k]}" for k in sorted(v["options"]))
           + " |" for v in r["variants"]]
    md += ["", "## Metrics", ""] + [f"- `{k}`: {d}" for k, d in r["metric_docs"].items()] + [""]
    if plots:
        md += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    elif not plots:
        md += ["(no plots: matplotlib is not installed; `pip install 'dragkit[eval]'`)", ""]
    if strip_files:
        md += ["## Before / after", "",
               "Columns: the first problems; rows: before (handles red, targets blue), after (final tracked "
               "handles or re-detected landmarks), and the target image where there is one.", ""]
        md += [f"**{s}**\n\n![{s}]({s})\n" for s in strip_files]
    atomic_write_bytes(out / "report.md", ("\n".join(md) + "\n").encode())
    return report


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
