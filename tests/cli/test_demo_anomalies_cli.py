"""`demo --anomalies` plants what `monitor run` then finds, one rule after another."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Cli

# Reads the time: run again under a moved wall clock by `make test` (tests/conftest.py).
pytestmark = pytest.mark.clock


def test_demo_anomalies_are_found_by_monitor_run(cli: Cli) -> None:
    loaded = cli(
        "demo",
        "--anomalies",
        "--facilities",
        "4",
        "--months",
        "3",
        "--as-of",
        "2026-05-20",
        user=None,
    )
    assert loaded.code == 0, loaded.err
    ran = cli("monitor", "run", "--json", user="manager")
    assert ran.code == 0, ran.err
    found = ran.json()
    assert isinstance(found, dict)
    rules = {alert["rule"] for alert in found["alerts"]}
    assert {"overpayment", "velocity", "own-payment", "reused-check", "near-duplicate"} <= rules
    assert all(alert["explanation"] for alert in found["alerts"])
