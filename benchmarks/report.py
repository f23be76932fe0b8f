"""Render a saved run as a Markdown table: `python -m benchmarks.report [PATH]`.

Keeps benchmarks/README.md honest: its table is pasted from a real run's JSON, not retyped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.__main__ import DEFAULT_JSON
from benchmarks.harness import Result, render_markdown


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else DEFAULT_JSON
    record = json.loads(path.read_text())
    results = [Result.from_json(r) for r in record["results"]]
    machine = record["machine"]
    load = record.get("load_average", {"start": [0.0], "end": [0.0]})
    print(render_markdown(results))
    print()
    print(
        f"`{record['command']}`, {record['duration_s']:.0f} s, {record['finished_at']}; "
        f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_mb']} MB, "
        f"Python {machine['python']}; load average {load['start'][0]:.1f} at start, "
        f"{load['end'][0]:.1f} at end."
    )
    for name, reason in record.get("skipped", {}).items():
        print(f"\nSkipped {name}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
