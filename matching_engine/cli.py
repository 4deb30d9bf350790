"""The ``matching-engine`` command line.

The subcommands (``serve``, ``migrate``, ``accounts``, ``replay``) come with the service. Each
will register on the ``subparsers`` object and set a ``handler`` default, which ``main`` calls.
"""

import argparse
from collections.abc import Callable

from matching_engine import __version__

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="matching-engine",
        description="A price-time-priority order-matching engine.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
