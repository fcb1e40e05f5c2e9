"""Shared test setup.

Tests marked `shared_data` need ../shared/data (the real CIFAR-10). In a user's clone they
skip with a reason; under `.ci/run`, which sets PROMIX_REQUIRE_SHARED_DATA=1 because the data
is there, such a skip is turned into a failure so it cannot pass silently.
"""

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def one_thread():
    """Two threads on a busy 2-core machine run 10x slower than one; modules that train
    several tiny runs use it for all their tests (`pytestmark = usefixtures("one_thread")`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
