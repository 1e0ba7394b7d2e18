"""Command line: typer apps, one module per command group; thin (parse, call, render)."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Sequence

from ollamactl.errors import EXIT_INTERRUPTED, OllamactlError, report


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: run the app, turn expected failures into one line and an exit code."""
    import typer

    from ollamactl.cli.app import app

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        code = app(args=args, prog_name="ollamactl", standalone_mode=False)
    except OllamactlError as exc:
        if debug:
            traceback.print_exc()
        sys.exit(report(exc))
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except typer.TyperException as exc:  # usage errors from argument parsing
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            print(f"ollamactl: error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    finally:
        logging.shutdown()
    if code == EXIT_INTERRUPTED:  # typer turns KeyboardInterrupt into Exit(130)
        print("interrupted", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)
