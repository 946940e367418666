"""`medasr` command line. Each sub-command lives in its own module of this package and is
found automatically: a module defines `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`.
Heavy imports (torch, transformers) happen inside `run`, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from medasr import __version__


def _commands():
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{__name__}.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medasr",
        description="Medical English speech recognition with Qwen3-ASR: transcribe, fine-tune, "
        "evaluate, serve and benchmark.",
        epilog="Run `medasr COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"medasr {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _commands():
        p = sub.add_parser(
            module.NAME,
            help=module.HELP.replace("%", "%%"),  # argparse %-formats help strings
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    from medasr.errors import UserError

    try:
        return int(args._run(args) or 0)
    except UserError as err:
        print(f"medasr {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"medasr {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `medasr score ... | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
