"""Statistics, the results table and the JSON record shared by every benchmark.

A single figure from one run says little on a shared 2-core machine, so every figure here is a
list of samples (one per repetition) reported as median, min and max. Ratios against a baseline
are computed from medians measured in the same run, so both sides saw the same machine state.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal


class Unavailable(Exception):
    """A benchmark cannot run here (a package it measures is missing or incomplete).

    Raised instead of failing so one missing piece does not hide every other figure; the reason
    is printed and kept in the JSON record.
    """


@dataclass(frozen=True)
class RunConfig:
    """What the command line asked for, handed to every benchmark."""

    quick: bool = False
    repeat: int | None = None

    def repeats(self, full: int = 5, quick: int = 3) -> int:
        """Repetitions for one benchmark: its own default unless the user chose a count."""
        if self.repeat is not None:
            return max(1, self.repeat)
        return quick if self.quick else full


@dataclass(frozen=True)
class Summary:
    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        if not samples:
            raise ValueError("a summary needs at least one sample")
        return cls(statistics.median(samples), min(samples), max(samples), len(samples))


@dataclass(frozen=True)
class Target:
    """A goal from the issues, checked on the ratio, or on the value when it has no baseline."""

    limit: float
    on: Literal["ratio", "value"] = "ratio"
    higher_is_better: bool = False

    def describe(self, unit: str) -> str:
        sign = ">=" if self.higher_is_better else "<="
        suffix = "x" if self.on == "ratio" else f" {unit}"
        return f"{sign} {_fmt(self.limit)}{suffix}"

    def met(self, value: float) -> bool:
        return value >= self.limit if self.higher_is_better else value <= self.limit


@dataclass
class Result:
    """One row of the table: a metric of a benchmark, with its baseline when it has one."""

    benchmark: str
    metric: str
    unit: str
    samples: list[float]
    baseline_name: str | None = None
    baseline_samples: list[float] | None = None
    target: Target | None = None
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> Summary:
        return Summary.of(self.samples)

    @property
    def baseline(self) -> Summary | None:
        return Summary.of(self.baseline_samples) if self.baseline_samples else None

    @property
    def ratio(self) -> float | None:
        base = self.baseline
        if base is None or base.median == 0:
            return None
        return self.summary.median / base.median

    @property
    def target_met(self) -> bool | None:
        if self.target is None:
            return None
        value = self.ratio if self.target.on == "ratio" else self.summary.median
        return None if value is None else self.target.met(value)

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Result:
        """Rebuild a row from the JSON record (for re-rendering a saved run)."""
        base = record.get("baseline")
        target = record.get("target_spec")
        return cls(
            benchmark=record["benchmark"],
            metric=record["metric"],
            unit=record["unit"],
            samples=list(record["samples"]),
            baseline_name=base["name"] if base else None,
            baseline_samples=list(base["samples"]) if base else None,
            target=Target(**target) if target else None,
            note=record.get("note"),
            extra=record.get("extra", {}),
        )

    def to_json(self) -> dict[str, Any]:
        s = self.summary
        base = self.baseline
        return {
            "benchmark": self.benchmark,
            "metric": self.metric,
            "unit": self.unit,
            "median": s.median,
            "min": s.min,
            "max": s.max,
            "n": s.n,
            "samples": self.samples,
            "baseline": None
            if base is None
            else {
                "name": self.baseline_name,
                "median": base.median,
                "min": base.min,
                "max": base.max,
                "samples": self.baseline_samples,
            },
            "ratio": self.ratio,
            "target": None if self.target is None else self.target.describe(self.unit),
            "target_spec": None if self.target is None else dataclasses.asdict(self.target),
            "target_met": self.target_met,
            "note": self.note,
            **({"extra": self.extra} if self.extra else {}),
        }


def module_exists(name: str) -> bool:
    """Whether a module can be found, without importing it (imports would skew cold starts)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: p99 of 1,000 round trips is the 990th, never an interpolation."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


COLUMNS = ("benchmark", "metric", "median", "min", "max", "unit", "baseline", "ratio", "target")


def table_rows(results: Sequence[Result]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for r in results:
        s = r.summary
        base = r.baseline
        ratio = r.ratio
        target = "-"
        if r.target is not None:
            verdict = {True: "met", False: "MISSED", None: "?"}[r.target_met]
            target = f"{r.target.describe(r.unit)} {verdict}"
        rows.append(
            (
                r.benchmark,
                r.metric,
                _fmt(s.median),
                _fmt(s.min),
                _fmt(s.max),
                r.unit,
                "-" if base is None else f"{_fmt(base.median)} ({r.baseline_name})",
                "-" if ratio is None else f"{ratio:.2f}x",
                target,
            )
        )
    return rows


def render_table(results: Sequence[Result]) -> str:
    """Plain aligned text: readable in a terminal and in CI logs without extra dependencies."""
    rows = [COLUMNS, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    numeric = {2, 3, 4, 7}
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.rjust(widths[i]) if i in numeric and index else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(results: Sequence[Result]) -> str:
    """The same table as Markdown, for benchmarks/README.md."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """Where the figures came from: numbers without the machine cannot be compared."""
    versions: dict[str, str | None] = {}
    for dist in ("websockets", "aiohttp", "boto3", "moto", "pydantic", "PyJWT", "cryptography"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_mb": _memory_mb(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": versions,
    }


def write_json(
    path: Path,
    results: Sequence[Result],
    *,
    config: RunConfig,
    skipped: dict[str, str],
    duration_s: float,
    argv: Sequence[str],
    load_at_start: Sequence[float],
) -> None:
    """Other work on the machine skews every figure, so the load averages are kept too."""
    record = {
        "command": " ".join(["python -m benchmarks", *argv]),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "duration_s": round(duration_s, 1),
        "quick": config.quick,
        "repeat": config.repeat,
        "machine": machine(),
        "load_average": {"start": list(load_at_start), "end": list(os.getloadavg())},
        "results": [r.to_json() for r in results],
        "skipped": skipped,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
