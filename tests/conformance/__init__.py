"""One conformance suite every source and sink passes (STYLE.md 6), shaped like singer-sdk's.

- protocol.py: what a connector's adapter implements (`SinkAdapter`, `SourceAdapter`);
- sink_cases.py, source_cases.py: one small class per behaviour, its numbers in data/<name>.yaml;
- factory.py: `sink_test_class(Adapter)` / `source_test_class(Adapter)`, the whole suite as a class;
- harness.py, processes.py: the connector under test as its real `sagesf run` process;
- sage.py, salesforce.py: the adapters; test_conformance.py: one line per connector.
"""
