"""The conformance suite's one fixture: the `Stack` an adapter is made from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

# the cases assert in their own modules: have pytest show the values there too
pytest.register_assert_rewrite(
    "tests.conformance.harness", "tests.conformance.sink_cases", "tests.conformance.source_cases"
)

from tests.conformance.protocol import Stack  # noqa: E402 - after the registration above


@pytest.fixture
def stack(
    request: pytest.FixtureRequest,
    kafka_bootstrap: str,
    schema_registry_url: str,
    new_topic: Callable[..., str],
    tmp_path: Path,
) -> Stack:
    """This test's broker, registry, topic maker and scratch directory; the adapter asks
    `stack.fixture(name)` for the fixtures of its own system (only those start)."""
    return Stack(kafka_bootstrap, schema_registry_url, new_topic, tmp_path, request.getfixturevalue)
