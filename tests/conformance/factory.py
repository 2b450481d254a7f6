"""One call gives a connector the whole suite: `sink_test_class(Adapter)`, `source_test_class(Adapter)`.

Like singer-sdk's `get_target_test_class`: the returned class has one `test_<case name>` method
per case, each handed a fresh connector under test (its adapter made from this test's topics and
fixtures through the `stack` fixture of conftest.py, its process stopped and its adapter closed
afterwards). Assign it to a `Test...` name in a test module and pytest collects it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from tests.conformance.harness import SinkUnderTest, SourceUnderTest
from tests.conformance.protocol import SinkAdapter, SourceAdapter, Stack
from tests.conformance.sink_cases import SINK_CASES, SinkCase
from tests.conformance.source_cases import SOURCE_CASES, SourceCase

__all__ = ["sink_test_class", "source_test_class"]


def sink_test_class(
    adapter: Callable[[Stack], SinkAdapter], cases: Sequence[type[SinkCase]] = SINK_CASES
) -> type:
    """A test class running every sink case against the sink `adapter(stack)` speaks for."""

    class SinkConformance:
        @pytest.fixture
        def sink(self, stack: Stack) -> Iterator[SinkUnderTest]:
            made = adapter(stack)
            try:
                under_test = SinkUnderTest(made, stack)
            except BaseException:
                made.close()
                raise
            yield under_test
            under_test.close()

    for case in cases:
        _add(SinkConformance, case, _sink_test(case()))
    return _named(SinkConformance, adapter)


def source_test_class(
    adapter: Callable[[Stack], SourceAdapter], cases: Sequence[type[SourceCase]] = SOURCE_CASES
) -> type:
    """A test class running every source case against the source `adapter(stack)` speaks for."""

    class SourceConformance:
        @pytest.fixture
        def source(self, stack: Stack) -> Iterator[SourceUnderTest]:
            made = adapter(stack)
            try:
                under_test = SourceUnderTest(made, stack)
            except BaseException:
                made.close()
                raise
            yield under_test
            under_test.close()

    for case in cases:
        _add(SourceConformance, case, _source_test(case()))
    return _named(SourceConformance, adapter)


def _sink_test(case: SinkCase) -> Callable[[Any, SinkUnderTest], None]:
    def test(self: Any, sink: SinkUnderTest) -> None:
        case.test(sink)

    return test


def _source_test(case: SourceCase) -> Callable[[Any, SourceUnderTest], None]:
    def test(self: Any, source: SourceUnderTest) -> None:
        case.test(source)

    return test


def _add(cls: type, case: type[SinkCase | SourceCase], test: Callable[..., None]) -> None:
    test.__name__ = f"test_{case.name}"
    test.__doc__ = case.__doc__
    setattr(cls, test.__name__, test)


def _named(cls: type, adapter: Callable[..., Any]) -> type:
    name = getattr(adapter, "__name__", "Connector").removesuffix("Adapter")
    cls.__name__ = cls.__qualname__ = f"Test{name}Conformance"
    return cls
