"""Shadow mode: a candidate mapping directory (SAGESF_PROCESSORS__SHADOW_MAPPINGS_DIR) applied
to every live customer, item and sales order record beside the mapping in use, counting where
the two would send something different and where the candidate would fail. Nothing is produced.

How it works: `ShadowMappings.observe` runs processors.preview.comparisons on each decoded record
before the record's handler, under the mappings in use and under the candidate, and counts
`sagesf_processor_shadow_records_total`, `..._differences_total` and `..._failures_total`
(labels entity, direction; a sales order counts once as order-header, once as order-lines);
each difference or failure is logged at DEBUG with the fields that differ or the reason. The
candidate is read at start-up and again when its files change (on the mappings reload timer); a
candidate that does not load is logged and shadowing pauses until it is fixed. A shadow
comparison never affects the record: any error in it is logged and dropped.

Limits: only mapped columns are compared (processors.preview); a record retried after a
retriable error is observed again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from processors.mapping_files import load_mappings
from processors.mapping_model import Mappings
from processors.metrics import SHADOW_DIFFERENCES, SHADOW_FAILURES, SHADOW_RECORDS
from processors.preview import Comparison, comparisons
from sagesf.errors import MappingError

__all__ = ["ShadowMappings"]

log = logging.getLogger(__name__)


class ShadowMappings:
    def __init__(self, directory: Path, salesforce: Path | None, sage: Path | None) -> None:
        self.directory = directory
        self._metadata = {"salesforce_metadata": salesforce, "sage_metadata": sage}
        self.candidate: Mappings | None = None
        self._load()

    def _load(self) -> None:
        try:
            self.candidate = load_mappings(self.directory, **self._metadata)
        except MappingError as exc:
            self.candidate = None
            log.error(
                "shadow mappings in %s do not load; shadowing paused:\n  %s",
                self.directory,
                "\n  ".join(exc.problems),
            )
            return
        log.info("shadow mappings loaded from %s", self.directory)

    def reload_if_changed(self) -> None:
        if self.candidate is None or self.candidate.changed():
            self._load()

    def observe(self, topic: str, record: Mapping[str, Any], current: Mappings) -> None:
        """Compare `record` (of topics.yaml topic `topic`) under `current` and the candidate."""
        if self.candidate is None:
            return
        try:
            found = comparisons(topic, record, current, self.candidate)
        except Exception:  # a shadow must never hurt the live record
            log.exception("shadow comparison failed on a %s record", topic)
            return
        for comparison in found:
            _count(comparison)


def _count(found: Comparison) -> None:
    labels = (found.entity, found.direction)
    SHADOW_RECORDS.labels(*labels).inc()
    if found.candidate.error is not None:
        SHADOW_FAILURES.labels(*labels).inc()
        log.debug("shadow %s %s: the candidate fails: %s", *labels, found.candidate.error)
    if found.differs:
        SHADOW_DIFFERENCES.labels(*labels).inc()
        log.debug("shadow %s %s: differs in %s", *labels, ", ".join(found.changed_fields))
