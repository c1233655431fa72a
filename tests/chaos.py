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
