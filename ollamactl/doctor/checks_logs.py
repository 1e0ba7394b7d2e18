"""Log checks: known trouble patterns in the recent log (whether the journal keeps it is checked
by :mod:`ollamactl.service.linux_systemd`)."""

from __future__ import annotations

from ollamactl.doctor.finding import Finding, Fix, ok, skip, warn
from ollamactl.doctor.probe import LOG_LINES, Probe
from ollamactl.doctor.registry import check

#: (log text, what it means, what to do)
PATTERNS = (
    ("truncating input prompt", "prompts longer than num_ctx were cut",
     "raise num_ctx per request or OLLAMA_CONTEXT_LENGTH (memory grows with it x NUM_PARALLEL)"),
    ("server busy, please try again", "requests got 503 (queue full)",
     "raise OLLAMA_MAX_QUEUE or OLLAMA_NUM_PARALLEL, or add capacity"),
    (" 503 ", "requests got 503 (queue full)",
     "raise OLLAMA_MAX_QUEUE or OLLAMA_NUM_PARALLEL, or add capacity"),
    ("resetting model to expire immediately", "models reload again and again",
     "a client sends a different num_ctx or keep_alive: align the clients' options"),
)


@check("logs.patterns", "No known trouble in the recent log", area="logs")
def patterns(p: Probe) -> Finding:
    """C36: truncated prompts, 503s, reload churn in the last lines of the service's log."""
    lines = p.log_lines
    if lines is None:
        return skip("no service log to read (the service is not installed)")
    hits: dict[str, tuple[int, str]] = {}
    for line in lines:
        for needle, meaning, advice in PATTERNS:
            if needle in line:
                count, _ = hits.get(meaning, (0, advice))
                hits[meaning] = (count + 1, advice)
    if hits:
        return warn("; ".join(f"{meaning} ({count}x)" for meaning, (count, _) in hits.items()),
                    "\n".join(advice for _, advice in hits.values()),
                    Fix("see the detail: " + next(iter(hits.values()))[1]))
    return ok(f"none of {len(PATTERNS)} known patterns in the last {len(lines)} log line(s) "
              f"(up to {LOG_LINES} read)")
