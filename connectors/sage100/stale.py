"""Whether a command is older than the AR_Customer row it would change: replays never regress Sage.

Owns `NewerRowCheck`, which the Sage sink asks before it updates a customer, and the counter of
the commands it kept from writing (`sagesf_sage_stale_commands_total`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from prometheus_client import Counter

from connectors.sage100.reads import CustomerRow
from connectors.sage100.values import local_to_utc
from sagesf.stale import Stale

__all__ = ["COMPARED_WITH", "STALE_COMMANDS", "NewerRowCheck"]

COMPARED_WITH = "AR_Customer.DateUpdated+TimeUpdated"
STALE_COMMANDS = Counter(
    "sagesf_sage_stale_commands_total",
    "Commands the Sage sink did not write because the row held a newer change by a Sage user",
    ["kind"],
)


@dataclass(frozen=True)
class NewerRowCheck:
    """The rule: a customer row is newer than a command when

    1. someone other than the integration changed it last (UserUpdatedKey is not
       `integration_user`: a Sage user, or another program), and
    2. its DateUpdated + TimeUpdated, read as the Sage server's local time (`zone`) and converted
       to UTC, is later than the command's source_event_time by more than `tolerance`.

    Equal is not newer, and neither is within `tolerance`: Sage truncates TimeUpdated to 0.0001
    hour (0.36 s), and the Sage server's clock and the clock that stamped the command (Salesforce's)
    differ by some skew, so two changes that close cannot be ordered; the command then wins, as
    before this check. A command without a source_event_time, and a row without DateUpdated, are
    not compared. In the hour Sage's local clock repeats when daylight saving time ends, a stamp
    is read as its first occurrence (values.local_to_utc), so a change in the second pass may look
    an hour older than it is.

    A row the integration changed last is not compared: its stamp is when the sink wrote, not when
    the change it wrote happened, so an old command would wrongly lose to it (a sink that lagged
    behind writes two changes of one Account and the second must still go through). Sage keeps no
    version of ours, so a single old command replayed after a newer one the sink itself applied is
    written; the newer change is then only in Salesforce, which reconciliation reports.
    """

    zone: ZoneInfo
    integration_user: str
    tolerance: timedelta = timedelta(seconds=2)

    def newer(self, row: CustomerRow, event_time: datetime | None, kind: str) -> Stale | None:
        """`Stale` (the reason and both times) when `row` holds a change newer than `event_time`."""
        local = row.updated_local
        if event_time is None or local is None or self._ours(row.updated_by):
            return None
        changed = local_to_utc(local, self.zone)
        if event_time.tzinfo is None:
            event_time = event_time.replace(tzinfo=UTC)
        if changed - event_time <= self.tolerance:
            return None
        STALE_COMMANDS.labels(kind).inc()
        who = f"user {row.updated_by}" if row.updated_by else "a Sage user"
        return Stale(
            reason=(
                f"AR_Customer {row.ar_division_no}-{row.customer_no} was changed in Sage 100 by {who} at "
                f"{_utc(changed)}, after this change ({_utc(event_time)}); its values were not written"
            ),
            source_event_time=event_time,
            target_time=changed,
            compared_with=COMPARED_WITH,
        )

    def _ours(self, user: str | None) -> bool:
        return user is not None and user.strip().upper() == self.integration_user.strip().upper()


def _utc(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
