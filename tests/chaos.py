"""The fault tests' ledger: what each scenario tried, and what the audit found after recovery.

`make chaos` and `make test` print it at the end of the session (see conftest.py) and write
it to .callscribe/chaos-summary.json, the figures the README's reliability section quotes.
"""

from __future__ import annotations

import json
from pathlib import Path

from callscribe.audit import DayAudit

LEDGER: list[dict] = []


def record(case: str, audits: list[DayAudit], inputs: int, faults: int, loads_expected: int = 1) -> dict:
    """Add a scenario to the ledger and return its line; the caller asserts on it."""
    entry = {
        "case": case,
        "inputs": inputs,
        "faults": faults,
        "lost": sum(len(a.lost) + len(a.unfinished) for a in audits),
        # A recording counted twice, or loaded more often than the scenario asked for.
        "duplicates": sum(len(a.duplicated) + sum(n for k, n in a.loads.items() if k > loads_expected)
                          for a in audits),
        "details": [a.as_dict() for a in audits],
    }
    LEDGER.append(entry)
    return entry


def record_counts(case: str, inputs: int, faults: int, lost: int, duplicates: int) -> dict:
    """A scenario judged by its own counts rather than a day's audit."""
    entry = {"case": case, "inputs": inputs, "faults": faults, "lost": lost, "duplicates": duplicates, "details": []}
    LEDGER.append(entry)
    return entry


def summary() -> list[str]:
    if not LEDGER:
        return []
    width = max(len(e["case"]) for e in LEDGER)
    lines = [f"{'case':<{width}}  inputs  faults  lost  duplicates"]
    for e in LEDGER:
        lines.append(f"{e['case']:<{width}}  {e['inputs']:>6}  {e['faults']:>6}  {e['lost']:>4}  {e['duplicates']:>10}")
    total = {k: sum(e[k] for e in LEDGER) for k in ("inputs", "faults", "lost", "duplicates")}
    lines.append(f"{'total':<{width}}  {total['inputs']:>6}  {total['faults']:>6}  {total['lost']:>4}  "
                 f"{total['duplicates']:>10}")
    return lines


def write(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(LEDGER, indent=2, default=str))


def markdown(entries: list[dict], machine: str, when: str) -> str:
    lines = [f"Measured {when} on {machine}.", "",
             "| case | inputs | faults | lost | duplicates |", "|---|---:|---:|---:|---:|"]
    for e in entries:
        lines.append(f"| {e['case']} | {e['inputs']} | {e['faults']} | {e['lost']} | {e['duplicates']} |")
    total = {k: sum(e[k] for e in entries) for k in ("inputs", "faults", "lost", "duplicates")}
    lines.append(f"| **total** | **{total['inputs']}** | **{total['faults']}** | **{total['lost']}** | "
                 f"**{total['duplicates']}** |")
    return "\n".join(lines)


def update_readme(readme: Path, summary: Path) -> None:
    """Put the last run's summary between the README's chaos-summary markers."""
    import os
    from datetime import UTC, datetime

    from callscribe.dev.bench import cpu_model

    start, end = "<!-- chaos-summary:start -->", "<!-- chaos-summary:end -->"
    entries = json.loads(summary.read_text())
    table = markdown(entries, f"{cpu_model()}, {os.cpu_count()} CPUs",
                     datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    text = readme.read_text()
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{table}\n{end}{tail}")


if __name__ == "__main__":
    import sys

    root = Path(__file__).resolve().parents[1]
    update_readme(root / sys.argv[1] if len(sys.argv) > 1 else root / "README.md",
                  root / ".callscribe" / "chaos-summary.json")
