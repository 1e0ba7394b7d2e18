"""The entry point of ``python -m ollamactl`` and of the ``ollamactl`` console script: the
command line, except that a bare ``serve`` (how every service manager starts the server, and
how a user starts one in a terminal) goes straight to the server, without the CLI's imports."""

import sys


def main() -> None:
    if sys.argv[1:] == ["serve"]:
        from ollamactl.runtime.server import main as serve

        serve()
    else:
        from ollamactl.cli import main as cli

        cli()


if __name__ == "__main__":
    main()
