"""Runs hostile inputs in a process of its own, under a memory limit, and reports as JSON lines.

``python sec_child.py attacks DIR``, ``python sec_child.py fuzz DIR SEED CASES SECONDS`` or
``python sec_child.py all DIR SEED CASES SECONDS`` (both, one start-up).

After the imports and one warm-up load of each reader, the address space
is capped at its current size plus ``DRAGKIT_SEC_MEM_MB`` (default 1536 MB,
``RLIMIT_AS``) and an audit hook records any process start, network use,
code execution or file write outside ``DIR``.  Every case gets a wall-clock
alarm.  Each line printed is one JSON object; the last is
``{"done": true, ...}``.
"""
from __future__ import annotations

import json
import os
import random
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

torch.set_num_threads(1)

from dragkit.drag.session import DragSession  # noqa: E402
from dragkit.errors import CheckpointError, DragkitError  # noqa: E402
from dragkit.formats import load_checkpoint  # noqa: E402
from dragkit.images import read_image, read_mask  # noqa: E402
from dragkit.nets import Generator, StyleGAN3Generator  # noqa: E402

import sec_hostile as H  # noqa: E402

CASE_SECONDS = float(os.environ.get("DRAGKIT_SEC_CASE_SECONDS", "10"))
MEM_MB = int(os.environ.get("DRAGKIT_SEC_MEM_MB", "1536"))


class Hang(BaseException):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise Hang()


SIDE_EFFECTS: list[str] = []
_ACTIVE = [False]  # the hook records only while a case runs
_WATCHED = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "subprocess.Popen",
            "socket.connect", "socket.bind", "socket.sendto", "ctypes.dlopen", "exec", "compile", "os.remove",
            "os.rename", "os.rmdir", "shutil.rmtree", "os.chmod")


def install_hooks(root: Path) -> None:
    allowed = str(root)

    def hook(event: str, args: tuple) -> None:
        if not _ACTIVE[0] or (not event.startswith(_WATCHED) and event != "open"):
            return
        if event.startswith(("os.remove", "os.rename", "os.rmdir", "shutil.rmtree", "os.chmod")) and args \
                and isinstance(args[0], (str, bytes, os.PathLike)) and os.fsdecode(args[0]).startswith(allowed):
            return
        if event == "open":
            path, mode = args[0], args[1]
            writing = isinstance(mode, str) and any(c in mode for c in "wax+")
            if not writing or (isinstance(path, (str, bytes, os.PathLike)) and os.fsdecode(path).startswith(allowed)):
                return
        if event in ("exec", "compile"):
            # exec/compile of code objects built by the interpreter itself (e.g. warnings) are not file content
            src = args[0] if args else None
            if not isinstance(src, (str, bytes)) or b"module_src" not in (src if isinstance(src, bytes) else src.encode()):
                return
        SIDE_EFFECTS.append(f"{event} {str(args)[:120]}")

    sys.addaudithook(hook)


def limit_memory() -> int:
    vm = 0
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            vm = int(line.split()[1]) * 1024
    cap = vm + MEM_MB * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    return cap


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(name: str, fn: Callable[[], Any]) -> dict:
    before = len(SIDE_EFFECTS)
    peak0 = rss_mb()
    t0 = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    out: dict = {"case": name}
    _ACTIVE[0] = True
    try:
        result = fn()
        out.update(outcome="loaded", result=str(result)[:200])
    except Hang:
        out.update(outcome="hang")
    except CheckpointError as exc:
        out.update(outcome="refused", kind="CheckpointError", message=str(exc)[:400])
    except DragkitError as exc:
        out.update(outcome="refused", kind=type(exc).__name__, message=str(exc)[:400])
    except BaseException as exc:  # anything else is a finding
        out.update(outcome="crash", kind=type(exc).__name__, message=str(exc)[:300],
                   where=traceback.format_exc(limit=-3)[-600:])
    finally:
        _ACTIVE[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
    out["seconds"] = round(time.perf_counter() - t0, 3)
    out["peak_growth_mb"] = round(rss_mb() - peak0, 1)
    out["side_effects"] = SIDE_EFFECTS[before:]
    return out


def emit(d: dict) -> None:
    print(json.dumps(d), flush=True)


# ---------------------------------------------------------------------------------------------------------------


def attacks(root: Path) -> list[tuple[str, Callable[[], Any]]]:
    root.mkdir(parents=True, exist_ok=True)
    def pkl(name: str, data: bytes) -> Callable[[], Any]:
        path = root / f"{name}.pkl"
        path.write_bytes(data)
        return lambda: load_checkpoint(path)

    def native(name: str, change: dict) -> Callable[[], Any]:
        path = H.native_files(root / name, change)
        return lambda: load_checkpoint(path)

    def pt_zero_stride() -> Callable[[], Any]:
        path = root / "zero_stride.pt"
        sd = {k: v.clone() for k, v in H.tiny_generator().state_dict().items()}
        sd["mapping.fc0.weight"] = torch.zeros(1).expand(300_000, 16)
        sd["mapping.fc1.weight"] = torch.zeros(1).expand(300_000, 300_000)
        torch.save(sd, path)
        return lambda: load_checkpoint(path)

    G = H.tiny_generator()
    s = DragSession(G, seed=1)
    s.add_point((4, 4), (9, 9))
    good = s.get_state()

    def session(change: Callable[[dict], None]) -> Callable[[], Any]:
        st = json.loads(json.dumps(good))
        change(st)
        data = json.dumps(st).encode()
        return lambda: DragSession.from_bytes(data, G)

    from dragkit.formats import load_discriminator

    def disc_native(name: str, change: dict) -> Callable[[], Any]:
        path = H.native_discriminator(root / name, change)
        return lambda: load_discriminator(path)

    def disc_pkl(name: str, **kw: Any) -> Callable[[], Any]:
        path = root / f"{name}.pkl"
        path.write_bytes(H.discriminator_pickle(**kw))
        return lambda: load_discriminator(path)

    def tf_source_case() -> Callable[[], Any]:
        sentinel = Path(tempfile.gettempdir()) / f"dragkit-SENTINEL-tf-src-{os.getpid()}"  # outside the case folder
        path = root / "tfsrc.pkl"
        path.write_bytes(H.tf_source_writing(sentinel))

        def go() -> str:
            G = load_checkpoint(path)
            return f"Generator {G.img_resolution}px, {G.dragkit_metadata['source_format']}, sentinel exists: {sentinel.exists()}"

        return go

    bomb = H.png_bomb(13000)
    return [
        ("native discriminator declaring 4096 px x 8192 channels", disc_native("dwide", {
            "img_resolution": 4096, "channel_base": 2**24, "channel_max": 8192})),
        ("native discriminator img_resolution 32.5", disc_native("dfrac", {"img_resolution": 32.5})),
        ("pickled discriminator img_resolution 131072", disc_pkl("dres", img_resolution=131072, c_dim=0)),
        ("pickled discriminator 4096 px, no tensors", disc_pkl("dbig", img_resolution=4096, c_dim=0,
                                                               channel_base=2**24, channel_max=8192)),
        ("tuple chain, 2^40 paths (finding 3)", pkl("tuples", H.tuple_bomb(40))),
        ("init kwargs sharing one list 2^40 ways", pkl("kwargs", H.kwargs_bomb(40))),
        ("module tree sharing submodules 2^19 ways", pkl("modules", H.module_dag(19))),
        ("module tree nesting 40 deep", pkl("deep", H.module_dag(40))),
        ("w_dim 300000 (finding 4)", pkl("wdim", H.huge_kwargs_pickle(w_dim=300_000))),
        ("w_dim -5", pkl("wneg", H.huge_kwargs_pickle(w_dim=-5))),
        ("img_resolution 131072", pkl("res", H.huge_kwargs_pickle(img_resolution=131072))),
        ("largest accepted sizes, no tensors to match", pkl("maxed", H.huge_kwargs_pickle(
            w_dim=8192, z_dim=8192, img_resolution=4096,
            synthesis_kwargs={"channel_base": 2**24, "channel_max": 8192}))),
        ("zero-stride tensors claiming [300000, 300000]", pkl("zstride", H.zero_stride_pickle())),
        ("BUILD on a tensor growing it past its storage (finding 7)", pkl("build", H.build_on_tensor_pickle())),
        ("storage blob claiming 10^11 floats", pkl("blob", H.storage_bomb_pickle(10**11))),
        ("native num_layers 10^7", native("layers", {"mapping_kwargs.num_layers": 10**7})),
        ("native 32 layers of 8192 features, tiny file", native("wide", {
            "mapping_kwargs.num_layers": 32, "mapping_kwargs.layer_features": 8192, "w_dim": 8192})),
        ("native img_resolution 32.5", native("frac", {"img_resolution": 32.5})),
        (".pt with zero-stride tensors", pt_zero_stride()),
        ("session latent claiming 64 x 8192 codes", session(lambda st: st["latent"].update(shape=[1, 64, 8192]))),
        ("session with 300 point pairs", session(lambda st: st.__setitem__("points", st["points"] * 300))),
        ("session seed of 7 MB", session(lambda st: st.__setitem__("seed", "x" * 7_000_000))),
        ("session seed {$blob: /etc/passwd}", session(lambda st: st.__setitem__("seed", {"$blob": "/etc/passwd"}))),
        ("session r1 = 64 on a 16 px image", session(lambda st: st["options"].__setitem__("r1", 64.0))),
        ("TF pickle declaring 4096 px x 8192 features, tiny variables", pkl("tfbig", H.tf_big())),
        ("TF network components nesting 12 deep", pkl("tfdeep", H.tf_nesting(12))),
        ("TF network state sharing one list 4^10 ways", pkl("tfshare", H.tf_shared_list(10))),
        ("TF network state smuggling builtins.exec", pkl("tfexec", H.tf_changed(
            lambda st: st["static_kwargs"].update(nonlinearity=H.Exec("open('/tmp/x', 'w')"))))),
        ("TF network state holding an allowed callable", pkl("tfcall", H.tf_changed(
            lambda st: st["components"]["mapping"]["static_kwargs"].update(hook=OrderedDict)))),
        ("TF build_module_src that writes a file (loads, runs nothing)", tf_source_case()),
        ("StyleGAN3 record: 64 layers of 8192 channels, no tensors", pkl("sg3big", H.stylegan3_record_pickle(
            num_layers=64, channel_base=2**24, channel_max=8192, img_resolution=4096))),
        ("StyleGAN3 record: filter_size 10^6", pkl("sg3filter", H.stylegan3_record_pickle(filter_size=10**6))),
        ("PNG bomb as a 16 px mask (finding 5)", lambda: read_mask(bomb, 16)),
        ("PNG bomb as an image", lambda: read_image(bomb)),
    ]


# ---------------------------------------------------------------------------------------------------------------
# The fuzzer: structure-aware and byte-level mutations of valid files of the three readers.

INTERESTING: list[Any] = [-5, -1, 0, 1, 2, 3, 7, 32.5, 255, 4096, 2**31, 10**7, 300000, 1e308, -1e308, float("nan"),
                          float("inf"), "x", "", "../../etc/passwd", {"$blob": "/etc/passwd"}, None, True, False,
                          [], [1, 2], {}, {"a": 1}, "A" * 5000]


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:8]):
            out += _paths(v, prefix + (i,))
    return out


def mutate_json(obj: Any, rng: random.Random) -> Any:
    obj = json.loads(json.dumps(obj))
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(obj) if p]
        if not paths:
            break
        p = rng.choice(paths)
        parent = obj
        for k in p[:-1]:
            parent = parent[k]
        op = rng.random()
        if op < 0.15 and isinstance(parent, dict):
            parent.pop(p[-1], None)
        elif op < 0.25 and isinstance(parent, dict):
            parent[rng.choice(["extra", "$blob", "__class__", "module_src"])] = rng.choice(INTERESTING)
        elif op < 0.35 and isinstance(parent[p[-1]], list):
            parent[p[-1]] = parent[p[-1]] * rng.choice([0, 2, 50])
        elif op < 0.45 and isinstance(parent[p[-1]], (int, float)) and not isinstance(parent[p[-1]], bool):
            parent[p[-1]] = parent[p[-1]] * rng.choice([-1, 0.5, 2, 1000]) + rng.choice([0, 1, 0.5])
        else:
            parent[p[-1]] = rng.choice(INTERESTING)
    return obj


def mutate_bytes(data: bytes, rng: random.Random, protect: int = 0) -> bytes:
    b = bytearray(data)
    op = rng.random()
    if op < 0.2:
        return bytes(b[: rng.randint(0, len(b))])
    if op < 0.3:
        i, j = sorted(rng.sample(range(len(b)), 2))
        return bytes(b[:j] + b[i:j] + b[j:])  # duplicated slice
    if op < 0.4:
        i = rng.randrange(len(b))
        return bytes(b[:i] + bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 16))) + b[i:])
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(protect, len(b)) if protect < len(b) else rng.randrange(len(b))
        b[i] = rng.getrandbits(8) if rng.random() < 0.7 else rng.choice([0, 0x28, 0x2E, 0x4B, 0x4A, 0x62, 0x81, 0xFF])
    return bytes(b)


def fuzz(root: Path, seed: int, cases: int, seconds: float) -> None:
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    G = H.tiny_generator()
    kwargs = G.init_kwargs
    pkl_seed = H.nvidia_pickle(G)
    native_path = H.native_files(root / "seed", None)
    cfg = json.loads(native_path.with_suffix(".json").read_text())
    st_bytes = native_path.read_bytes()
    s = DragSession(G, seed=2)
    s.add_point((4, 4), (12, 6))
    s.set_mask(np.ones((16, 16), bool))
    list(s.run(max_steps=2))
    s.add_point((10, 10), (3, 3))
    session_state = s.get_state()
    session_text = json.dumps(session_state).encode()

    def check_model(m: Any) -> str:
        assert isinstance(m, (Generator, StyleGAN3Generator)), type(m)
        return f"{type(m).__name__} {m.img_resolution}px"

    tf_state = H.tf_layout(G)
    tf_seed = H.tf_pickle(tf_state)
    sg3 = H.tiny_stylegan3()
    sg3_kwargs = {k: sg3.init_kwargs[k] for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels",
                                                   "mapping_kwargs")}
    sg3_kwargs.update(sg3.init_kwargs["synthesis_kwargs"])
    sg3_seed = H.stylegan3_pickle(sg3, sg3_kwargs)

    def pickle_case(prefix: str, seed_bytes: bytes, build: Callable[[], bytes]) -> Callable[[int], Callable[[], Any]]:
        """Cases of one pickle kind: half the seed file's bytes mutated, half ``build()`` (mutated records)."""

        def case(i: int) -> Callable[[], Any]:
            data = mutate_bytes(seed_bytes, rng, protect=2) if rng.random() < 0.5 else build()
            path = root / f"{prefix}{i}.pkl"
            path.write_bytes(data)
            return lambda: check_model(load_checkpoint(path))

        return case

    def tf_mutated() -> bytes:
        st = dict(tf_state)
        comps = dict(st["components"])
        which = rng.choice(["Gs", "mapping", "synthesis"])
        target = st if which == "Gs" else dict(comps[which])
        target["static_kwargs"] = mutate_json(target["static_kwargs"], rng)
        if which != "Gs":
            comps[which] = target
        st["components"] = comps
        return H.tf_pickle(st)

    tf_case = pickle_case("t", tf_seed, tf_mutated)
    sg3_case = pickle_case("s", sg3_seed, lambda: H.stylegan3_pickle(sg3, mutate_json(sg3_kwargs, rng)))
    nvidia_case = pickle_case("n", pkl_seed, lambda: H.nvidia_pickle(G, init_kwargs=mutate_json(kwargs, rng)))

    def native_case(i: int) -> Callable[[], Any]:
        d = root / f"native{i}"
        d.mkdir()
        c, w = cfg, st_bytes
        r = rng.random()
        if r < 0.45:
            c = mutate_json(cfg, rng)
        elif r < 0.9:
            hlen = int.from_bytes(st_bytes[:8], "little")
            w = mutate_bytes(st_bytes[: 8 + hlen], rng) + st_bytes[8 + hlen:] if rng.random() < 0.6 \
                else mutate_bytes(st_bytes, rng)
        else:
            c = cfg if rng.random() < 0.5 else json.loads(json.dumps(cfg).replace("16", str(rng.choice([17, 32, 0]))))
        (d / "m.json").write_text(json.dumps(c) if rng.random() < 0.9 else mutate_bytes(json.dumps(c).encode(), rng).decode("latin-1"))
        (d / "m.safetensors").write_bytes(w)
        return lambda: check_model(load_checkpoint(d / "m.safetensors"))

    def session_case(i: int) -> Callable[[], Any]:
        data = mutate_json(session_state, rng) if rng.random() < 0.6 else None
        raw = json.dumps(data).encode() if data is not None else mutate_bytes(session_text, rng)

        def go() -> str:
            sess = DragSession.from_bytes(raw, G)
            img = sess.image_tensor()
            assert img.shape == (1, 3, 16, 16)
            return f"session with {len(sess.points)} points"

        return go

    makers = [("nvidia-pkl", nvidia_case), ("native", native_case), ("session", session_case), ("tf-pkl", tf_case),
              ("stylegan3-pkl", sg3_case)]
    deadline = time.monotonic() + seconds
    counts: dict[str, dict[str, int]] = {}
    findings: list[dict] = []
    done = 0
    for i in range(cases):
        if time.monotonic() > deadline:
            break
        reader, make = makers[i % len(makers)]
        try:
            fn = make(i)
        except Exception:  # a mutation the test itself cannot write: skip it
            continue
        r = run_case(f"{reader} #{i}", fn)
        done += 1
        c = counts.setdefault(reader, {})
        c[r["outcome"]] = c.get(r["outcome"], 0) + 1
        if r["outcome"] in ("crash", "hang") or r["side_effects"]:
            findings.append(r)
    emit({"done": True, "cases": done, "counts": counts, "findings": findings[:20], "seed": seed,
          "side_effects": SIDE_EFFECTS[:20]})


def warm_up(root: Path) -> None:
    """One valid load of each reader, so lazy imports happen before the limits."""
    G = H.tiny_generator()
    (root / "warm.pkl").write_bytes(H.nvidia_pickle(G))
    load_checkpoint(root / "warm.pkl")
    load_checkpoint(H.native_files(root / "warm", None))
    for name, data in (("warm_tf.pkl", H.tf_pickle()), ("warm_sg3.pkl", H.stylegan3_pickle())):
        (root / name).write_bytes(data)
        load_checkpoint(root / name)
    torch.save(G.state_dict(), root / "warm.pt")
    load_checkpoint(root / "warm.pt")
    s = DragSession(G, seed=0)
    DragSession.from_bytes(s.to_bytes(), G).image_tensor()
    read_mask(H.png_bytes(np.ones((16, 16), bool)), 16)
    for bad in (b"\x80\x04K\x01.", b"garbage"):
        (root / "bad.pkl").write_bytes(bad)
        try:
            load_checkpoint(root / "bad.pkl")
        except DragkitError:
            pass


def main() -> None:
    suite, root = sys.argv[1], Path(sys.argv[2])
    root.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGALRM, _alarm)
    warm_up(root)
    todo = attacks(root / "attacks") if suite in ("attacks", "all") else []
    cap = limit_memory()
    install_hooks(root)
    emit({"limit_bytes": cap, "rss_mb": rss_mb()})
    for name, fn in todo:
        emit(run_case(name, fn))
    if suite in ("fuzz", "all"):
        seed, cases, seconds = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        fuzz(root / "fuzz", seed, cases, seconds)
    else:
        emit({"done": True})


if __name__ == "__main__":
    main()
