"""`ollamactl top`: a live view of one server or a fleet (``metrics``: the Prometheus text;
``model``: samples and rates; ``render``: lines, no curses; ``screen``: the terminal and plain
loops)."""
