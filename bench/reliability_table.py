"""Render the README "Reliability" table from the outcomes the adversarial suite recorded.

    .venv/bin/python -m pytest tests/adversarial        # records .pytest_cache/d/reliability/
    .venv/bin/python bench/reliability_table.py         # prints the table
    .venv/bin/python bench/reliability_table.py --write README.md   # replaces it in the README

The table sits between ``<!-- reliability:start -->`` and ``<!-- reliability:end -->``; nothing
in it is typed by hand: every number is summed from what the tests reported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_RESULTS = Path(".pytest_cache/d/reliability/outcomes.json")
START, END = "<!-- reliability:start -->", "<!-- reliability:end -->"
ORDER = ["test_paths", "test_create_paths", "test_gguf_corpus", "test_http_abuse",
         "test_load", "test_faults", "test_fuzz", "test_root_links", "test_root_reexec",
         "test_settings_syntax", "test_unbounded_work", "test_redirects", "test_log_forging"]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(results: dict[str, Any]) -> str:
    """The markdown table: one row per class, then the command and run time."""
    classes = results.get("classes", {})
    lines = ["| Class | Tests passed | Inputs tried | Faults injected | Load held | Outcome |",
             "|---|---|---|---|---|---|"]
    latest = ""
    for key in sorted(classes, key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER)):
        entry = classes[key]
        tests = entry["tests"].values()
        passed = sum(1 for t in tests if t["outcome"] == "passed")
        skipped = [t for t in tests if t["outcome"] == "skipped"]
        failed = [t for t in tests if t["outcome"] not in ("passed", "skipped")]
        faults = [f for t in tests for f in t["faults"]]
        load = [item for t in tests for item in t["load"]]
        outcome = "pass" if not failed else f"FAIL ({len(failed)})"
        if skipped:
            outcome += f", {len(skipped)} skipped: " + "; ".join(t["detail"] for t in skipped)
        fault_text = f"{len(faults)}: " + "; ".join(sorted(set(faults))) if faults else "-"
        lines.append(f"| {_cell(entry['title'])} | {passed}/{len(tests)} | "
                     f"{sum(t['inputs'] for t in tests)} | {_cell(fault_text)} | "
                     f"{_cell('; '.join(load) or '-')} | {_cell(outcome)} |")
        latest = max(latest, entry["run_at"])
    lines += ["", f"Recorded by the adversarial suite (last run {latest}); regenerate with "
                  "`.venv/bin/python -m pytest tests/adversarial && "
                  ".venv/bin/python bench/reliability_table.py --write README.md`."]
    return "\n".join(lines)


def replace_section(readme: str, table: str) -> str:
    """``readme`` with the text between the markers replaced by ``table``."""
    if START not in readme or END not in readme:
        raise SystemExit(f"the README has no {START} ... {END} markers")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--write", type=Path, help="README to update in place")
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text())
    except (OSError, ValueError) as exc:
        print(f"reliability_table: cannot read {args.results}: {exc}", file=sys.stderr)
        return 1
    table = render(results)
    if args.write:
        args.write.write_text(replace_section(args.write.read_text(), table))
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
