"""Command line: run the chosen benchmarks, print one table, write the JSON record."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import Result, RunConfig, Unavailable, render_table, write_json

# Cheapest first, so a quick look at the table does not wait for the socket-heavy ones.
BENCHMARKS = (
    "jwt_speed",
    "cold_start",
    "router_cost",
    "aws_requests",
    "roundtrip",
    "async_job",
    "job_burst",
    "fanout",
    "connections",
)
DEFAULT_JSON = Path(__file__).parent / "results" / "latest.json"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="smaller counts and fewer repeats: a smoke run"
    )
    parser.add_argument(
        "--only",
        type=lambda s: [n.strip() for n in s.split(",") if n.strip()],
        default=None,
        metavar="NAME[,NAME]",
        help=f"run only these ({', '.join(BENCHMARKS)})",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH")
    parser.add_argument(
        "--repeat", type=int, default=None, metavar="N", help="repetitions per figure"
    )
    args = parser.parse_args(argv)
    unknown = set(args.only or ()) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    config = RunConfig(quick=args.quick, repeat=args.repeat)
    names = [n for n in BENCHMARKS if args.only is None or n in args.only]
    results: list[Result] = []
    skipped: dict[str, str] = {}
    load_at_start = os.getloadavg()
    started = time.perf_counter()
    for name in names:
        print(f"[{time.perf_counter() - started:6.1f}s] {name} ...", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            results.extend(module.run(config))
        except Unavailable as exc:
            skipped[name] = str(exc)
        except Exception as exc:
            traceback.print_exc()
            skipped[name] = f"failed: {type(exc).__name__}: {exc}"
    duration = time.perf_counter() - started
    if results:
        print(render_table(results))
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    write_json(
        args.json,
        results,
        config=config,
        skipped=skipped,
        duration_s=duration,
        argv=argv,
        load_at_start=load_at_start,
    )
    load = f"load average {load_at_start[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    print(f"\n{len(results)} figures in {duration:.0f} s ({load})")
    print(f"JSON: {args.json}")
    return 1 if skipped and not results else 0


if __name__ == "__main__":
    sys.exit(main())
