"""The EMF the functions write carries the dimensions the deployed alarms watch."""

from __future__ import annotations

import json
import os

import pytest
from streamer_handlers._lambda import observability
from streamer_handlers._routes import METRICS_NAMESPACE, metric_dimensions


def test_emitted_metrics_carry_exactly_the_declared_dimensions(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    capsys.readouterr()

    observability.count("AuthFailures")
    observability.flush_metrics()

    lines = [line for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    assert len(lines) == 1
    record = json.loads(lines[0])
    (directive,) = record["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == METRICS_NAMESPACE
    expected = metric_dimensions(os.environ.get("STREAMER_ENV") or "dev")
    (dimension_set,) = directive["Dimensions"]
    assert sorted(dimension_set) == sorted(expected)
    assert {name: record[name] for name in expected} == expected
    assert record["AuthFailures"] == [1.0] or record["AuthFailures"] == 1.0
