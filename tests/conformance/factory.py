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
    return _test_class(adapter, SinkUnderTest, cases)


def source_test_class(
    adapter: Callable[[Stack], SourceAdapter], cases: Sequence[type[SourceCase]] = SOURCE_CASES
) -> type:
    """A test class running every source case against the source `adapter(stack)` speaks for."""
    return _test_class(adapter, SourceUnderTest, cases)


def _test_class(
    adapter: Callable[[Stack], Any],
    under_test: Callable[[Any, Stack], Any],
    cases: Sequence[type[SinkCase] | type[SourceCase]],
) -> type:
    """A class with the fixture `connector` (the connector under test, closed afterwards) and one
    test per case."""

    @pytest.fixture
    def connector(self: Any, stack: Stack) -> Iterator[Any]:
        made = adapter(stack)
        try:
            tested = under_test(made, stack)
        except BaseException:
            made.close()
            raise
        yield tested
        tested.close()

    namespace: dict[str, Any] = {"connector": connector}
    for case in cases:
        test = _test(case())
        namespace[test.__name__] = test
    name = getattr(adapter, "__name__", "Connector").removesuffix("Adapter")
    cls = type(f"Test{name}Conformance", (), namespace)
    cls.__qualname__ = cls.__name__
    return cls


def _test(case: SinkCase | SourceCase) -> Callable[[Any, Any], None]:
    def test(self: Any, connector: Any) -> None:
        case.test(connector)

    test.__name__ = f"test_{case.name}"
    test.__doc__ = type(case).__doc__
    return test
