"""Every connector passes the same conformance suite (tests/conformance/sink_cases.py and
source_cases.py): one adapter and one line here per connector."""

from __future__ import annotations

import pytest

from tests.conformance.factory import sink_test_class, source_test_class
from tests.conformance.sage import SageSinkAdapter, SageSourceAdapter
from tests.conformance.salesforce import SalesforceSinkAdapter, SalesforceSourceAdapter

pytestmark = pytest.mark.integration

TestSageSinkConformance = sink_test_class(SageSinkAdapter)
TestSalesforceSinkConformance = sink_test_class(SalesforceSinkAdapter)
TestSageSourceConformance = source_test_class(SageSourceAdapter)
TestSalesforceSourceConformance = source_test_class(SalesforceSourceAdapter)
