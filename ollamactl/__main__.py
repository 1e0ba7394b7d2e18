"""`python -m ollamactl` entry point."""

from ollamactl.cli import main

if __name__ == "__main__":
    main()
