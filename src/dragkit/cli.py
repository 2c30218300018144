"""The ``dragkit`` command.

Each subcommand lives beside the code it drives and exposes
``register(subparsers)``; it adds its parser and sets ``func`` to a callable
taking the parsed ``argparse.Namespace`` and returning an exit code (or None
for 0).  Errors derived from :class:`dragkit.errors.DragkitError` (and a few
OS errors) become one line on stderr and a non-zero exit; ``--debug`` shows
the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from typing import Sequence

# The package's __init__ has set OMP_WAIT_POLICY=PASSIVE before torch loads
# (dragkit/threads.py: the library and the CLI tune threads the same way).

from .errors import DragkitError

# module path -> registers one or more subcommands; every one exists (a
# missing one is an error, not a silently absent command).  Imported when the
# parser is built, so that `import dragkit.cli` stays cheap.
_SUBCOMMAND_MODULES = (
    "dragkit.models_cli",  # models, generate, convert
    "dragkit.train.cli",  # train
    "dragkit.drag.cli",  # drag
    "dragkit.server.cli",  # serve
    "dragkit.eval.cli",  # eval
    "dragkit.invert.cli",  # invert
    "dragkit.bench",  # bench
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``dragkit: error: argument --psi: invalid float value: 'x'
    (see dragkit generate --help)``) instead of the usage block and the error; every
    subcommand's parser is one of these too (``add_subparsers`` makes its parsers of this class)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"dragkit: error: {message} (see {self.prog} --help)\n")
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dragkit",
        description="DragGAN as real software: drag points on StyleGAN2 images.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for modname in _SUBCOMMAND_MODULES:
        importlib.import_module(modname).register(sub)
    return parser
def _version() -> str:
    from . import __version__

    return f"dragkit {__version__}"
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line (before or after the subcommand), up to a literal "--"
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end]
    if debug:
        argv = [a for a in argv[:end] if a != "--debug"] + argv[end:]
        argv.insert(0, "--debug")
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        rc = args.func(args)
        return 0 if rc is None else int(rc)
    except KeyboardInterrupt:
        print("dragkit: interrupted", file=sys.stderr)
        return 130
    except (DragkitError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        if debug:
            raise
        msg = str(exc) if isinstance(exc, DragkitError) else f"{exc.strerror}: {exc.filename}"
        print(f"dragkit: error: {msg}", file=sys.stderr)
        return 1
if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
