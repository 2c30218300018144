"""``dragkit serve``: the drag editor in the browser."""
from __future__ import annotations

import argparse
import ipaddress
import socket
import sys

from ..errors import DragkitError
from .settings import add_cli_flags, limits_from_args

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """True if ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_threads(cpus: int) -> int:
    """Half the cores, at most 8: the compute thread shares the machine with the
    server, the browser and often a training run, and an oversubscribed
    PyTorch thread pool is many times slower than a smaller one (measured:
    9 ms vs 170 ms per toy drag step with 1 vs 2 threads on 2 busy cores).
    The rule is :func:`dragkit.threads.default_threads` (the library's too)."""
    from ..threads import default_threads as rule

    return rule(cpus)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="the drag editor in your browser",
        description="Serve the drag editor: open the printed URL in a browser. "
        "Binds 127.0.0.1 unless told otherwise. Every request needs the server's token (the printed URL "
        "carries it in its #fragment); it comes from $DRAGKIT_TOKEN, else --token, else the one saved in "
        "the sessions folder, else a new one. Any address other than loopback needs $DRAGKIT_TOKEN or --token.",
    )
    p.add_argument("--model", default=None, help="model for new tabs (default: faces128 if bundled, else toy)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 picks a free one)")
    p.add_argument("--token", default=None,
                   help="'auto' (a new random token) or a secret every request must carry; prefer the "
                   "DRAGKIT_TOKEN environment variable, which other users cannot see in `ps` "
                   "(one of them is required for a non-loopback --host)")
    p.add_argument("--sessions-dir", default=None, help="where open edits are saved (default $DRAGKIT_HOME/sessions)")
    add_cli_flags(p)  # --max-points, --max-steps, --max-sessions, --keep-days: the Limits' defaults
    p.add_argument("--threads", type=int, default=None,
                   help="PyTorch CPU threads for the optimisation (default: half the CPU cores, at most 8; "
                   "on a busy machine 1 is often fastest)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from .security import TOKEN_ENV

    explicit = bool(os.environ.get(TOKEN_ENV)) or args.token is not None
    if not is_loopback(args.host) and not explicit:
        raise DragkitError(
            f"refusing to serve on {args.host}, which other machines can reach, without an explicit token "
            f"(set {TOKEN_ENV}=SECRET, or use --token auto)"
        )
    limits = limits_from_args(args)  # raises with the flag's name
    if not 0 <= args.port <= 65535:
        raise DragkitError(f"--port must be 0..65535, got {args.port}")

    import torch
    import uvicorn

    from ..models import cache_dir, resolve_model
    from .app import create_app
    from .security import resolve_token
    from .sessions import SessionStore

    threads = args.threads if args.threads is not None else default_threads(os.cpu_count() or 1)
    if threads < 1:
        raise DragkitError("--threads must be at least 1")
    torch.set_num_threads(threads)
    if args.model is not None:
        resolve_model(args.model)  # unknown model: fail now with the list of models
    allowed_hosts = None
    if is_loopback(args.host):  # refuse other Host names (DNS rebinding)
        allowed_hosts = LOOPBACK_NAMES | {args.host.strip("[]")}
    sessions_dir = args.sessions_dir or cache_dir() / "sessions"
    store = SessionStore(sessions_dir, keep_days=limits.keep_days)  # creates the folder, private
    token, token_from = resolve_token(args.token, sessions_dir)
    if token_from == "argument":
        print(f"dragkit serve: warning: a --token given on the command line is visible to other users of this "
              f"machine (ps); set {TOKEN_ENV} instead", file=sys.stderr, flush=True)
    if limits.keep_days > 0:
        gone = store.prune(limits.keep_days)
        if gone:
            print(f"dragkit serve: removed {gone} saved edit(s) untouched for {limits.keep_days:g} days",
                  file=sys.stderr, flush=True)
    app = create_app(args.model, sessions_dir=sessions_dir, token=token, allowed_hosts=allowed_hosts,
                     limits=limits, preload=True)

    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host.strip("[]"), args.port))
    except OSError as exc:
        raise DragkitError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{port}/"
    if token_from == "env":  # the user knows it; never print a secret they chose
        print(f"dragkit editor: {url}  (token: ${TOKEN_ENV})", file=sys.stderr, flush=True)
    else:  # the #fragment never leaves the browser: not sent, not logged
        print(f"dragkit editor: {url}#token={token}", file=sys.stderr, flush=True)
    if args.host in ("0.0.0.0", "::"):
        print("  (from other machines, use this machine's address in place of 127.0.0.1)", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level=args.log_level, ws_max_size=limits.max_message_chars + 1024,
                            timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
