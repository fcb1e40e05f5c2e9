"""Shared test setup.

Tests marked `shared_data` need ../shared/data (the real CIFAR-10). In a user's clone they
skip with a reason; under `.ci/run`, which sets PROMIX_REQUIRE_SHARED_DATA=1 because the data
is there, such a skip is turned into a failure so it cannot pass silently.
"""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    required = os.environ.get("PROMIX_REQUIRE_SHARED_DATA") == "1"
    if required and report.skipped and item.get_closest_marker("shared_data"):
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} needs {SHARED_DATA} and was skipped, but "
            "PROMIX_REQUIRE_SHARED_DATA=1 says the data must be present here"
        )
