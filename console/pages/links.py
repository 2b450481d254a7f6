"""/links: the record-linking review queue and the linked pairs; Accept, Reject and Unlink for
operators (audited), through linking.decisions as `sagesf link accept|reject|unlink` does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from confluent_kafka import KafkaException
from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import RedirectResponse, Response

from console.access import require
from console.state import audit_log, cluster
from console.templating import flash, render
from console.users import OPERATOR, VIEWER, User
from linking import decisions
from linking.decisions import Decision, Refused
from linking.effects import LinkFields
from sagesf.errors import Retriable
from sagesf.link_state import LINKED, LinkBook, PairState
from sagesf.logs import redact
from sagesf.topic_scan import ScanTimeout

__all__ = ["router"]

router = APIRouter(prefix="/links")
SHOWN = 200  # pairs listed per table

Decide = Callable[[LinkBook, PairState, str, LinkFields], Decision]
DECISIONS: dict[str, Decide] = {
    "accept": lambda book, pair, who, fields: decisions.accept(book, pair, who, fields),
    "reject": lambda book, pair, who, fields: decisions.reject(book, pair, who),
    "unlink": lambda book, pair, who, fields: decisions.unlink(book, pair, who, fields),
}


@router.get("")
def links(
    request: Request, user: Annotated[User, Depends(require(VIEWER))], kind: str | None = None
) -> Response:
    book = cluster(request).link_store().book()
    queue = decisions.review_queue(book, kind or None)
    linked = sorted(
        (p for p in book.pairs() if p.state == LINKED and (not kind or p.kind == kind)),
        key=lambda p: p.at,
        reverse=True,
    )
    return render(
        request,
        "links.html",
        user=user,
        nav="links",
        kind=kind or "",
        queue=queue[:SHOWN],
        waiting=len(queue),
        linked=linked[:SHOWN],
        linked_count=len(linked),
    )


@router.post("/{action}")
def decide(
    request: Request,
    user: Annotated[User, Depends(require(OPERATOR))],
    action: str,
    pair: Annotated[str, Form(max_length=400)],
) -> Response:
    choose = DECISIONS.get(action)
    if choose is None:
        return render(
            request, "problem.html", status_code=404, title="Not found", reason=f"no action {action!r}"
        )
    store = cluster(request).link_store()
    outcome: dict[str, object] = {"action": action}
    try:
        book = store.book()
        found = decisions.find_pair(book, pair)
        decision = choose(book, found, user.name, store.settings.fields)
        store.write(decision)
    except Refused as exc:
        ok, message = False, f"Refused: {exc}"
    except (KafkaException, ScanTimeout, Retriable) as exc:
        ok, message = False, f"Not decided, Kafka cannot be written now: {redact(str(exc))}"
    else:
        changes = [f"{p.key}: {p.state}" for p in decision.changed]
        outcome["changed"] = changes
        ok, message = True, "; ".join(changes + decision.notes) or "Nothing to do"
    outcome["outcome"] = message
    audit_log(request).record(user.name, f"link.{action}", pair, detail=outcome)
    flash(request, message, "success" if ok else "error")
    return RedirectResponse("/links", status_code=303)
