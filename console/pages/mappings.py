"""/mappings: the mapping editor (per entity and direction), the review of a draft's changes,
save (mapper only, audited with the diff), and the version history with restore.

Every edit goes to the user's draft (console.mappings.draft) and the page shows the draft again,
validated by the processors' own loader, each problem next to its row. Nothing reaches the live
files until Save; the running processors reload them by themselves (their reload timer).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from confluent_kafka import KafkaException
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from console.access import require
from console.mappings.draft import MappingDraft, validate
from console.mappings.editor import (
    CUSTOM_TYPES,
    UNKNOWN_RULES,
    EditorView,
    PairRequest,
    ValueMapEdit,
    pair,
    set_code_lookup,
    set_transform,
    set_value_map,
    unpair,
)
from console.mappings.entities import DIRECTIONS, ENTITIES, Direction, Entity
from console.mappings.fields import sage_columns, salesforce_fields
from console.mappings.history import MappingHistory
from console.mappings.preview_records import TOPIC_OF_ENTITY, load_both, preview
from console.state import audit_log, cluster, console_settings
from console.templating import flash, render
from console.users import MAPPER, VIEWER, User
from sagesf.errors import MappingError
from sagesf.topic_scan import ScanTimeout, TopicMissing

__all__ = ["router"]

router = APIRouter(prefix="/mappings")

Viewer = Annotated[User, Depends(require(VIEWER))]
Mapper = Annotated[User, Depends(require(MAPPER))]


def draft_of(request: Request, user: User) -> MappingDraft:
    settings = console_settings(request)
    return MappingDraft(settings.mappings_dir, settings.state_dir, user.name)


def history_of(request: Request) -> MappingHistory:
    settings = console_settings(request)
    return MappingHistory(settings.mappings_dir, settings.state_dir)


def _entity(key: str) -> Entity:
    found = ENTITIES.get(key)
    if found is None:
        raise HTTPException(404, f"no entity {key!r} (known: {', '.join(ENTITIES)})")
    return found


def _direction(direction: str) -> Direction:
    return "to_salesforce" if direction == "to_salesforce" else "to_sage"


def _back(entity: Entity, direction: str, anchor: str = "") -> RedirectResponse:
    return RedirectResponse(f"/mappings/{entity.key}?direction={direction}{anchor}", status_code=303)


READ_ONLY_NOTE = (
    "The mappings are read-only in this console (SAGESF_CONSOLE__MAPPINGS_READ_ONLY): they are rolled"
    " out with the deployment, not saved here. Take the diff below to the mapping files in your"
    " repository instead."
)


def _refused_read_only(request: Request, what: str) -> Response | None:
    """A redirect with the reason when this console may not write the live files, else None."""
    if not console_settings(request).mappings_read_only:
        return None
    flash(request, f"Not {what}: {READ_ONLY_NOTE}", "error")
    return RedirectResponse("/mappings/changes", status_code=303)


def _reload_note(request: Request) -> str:
    every = console_settings(request).processors_reload_interval
    if every <= 0:
        return "The processors do not reload mappings by themselves here: restart them to use this version."
    return f"The running processors use it within {every:g} s (they check the files every {every:g} s)."


@router.get("")
def mappings_home(request: Request, user: Viewer) -> Response:
    return RedirectResponse("/mappings/customers", status_code=303)


# --- review, save, history (before /{entity}, which would take these names) -------------------


@router.get("/changes")
def changes(request: Request, user: Viewer) -> Response:
    draft = draft_of(request, user)
    settings = console_settings(request)
    problems = validate(draft.directory, settings.salesforce_metadata_file, settings.sage_metadata_file)
    return render(
        request,
        "mapping_changes.html",
        user=user,
        nav="mappings",
        diff=draft.diff(),
        problems=problems if draft.exists else [],
        moved_on=draft.moved_on(),
        reload_note=_reload_note(request),
        can_save=user.can(MAPPER),
        read_only=READ_ONLY_NOTE if settings.mappings_read_only else "",
    )


@router.post("/save")
def save(request: Request, user: Mapper) -> Response:
    if refused := _refused_read_only(request, "saved"):
        return refused
    draft = draft_of(request, user)
    settings = console_settings(request)
    if not draft.exists:
        flash(request, "Nothing to save: you have no unsaved changes.")
        return RedirectResponse("/mappings/changes", status_code=303)
    if moved := draft.moved_on():
        flash(
            request,
            f"Not saved: {', '.join(moved)} changed since your draft began. Discard it and redo your change.",
            "error",
        )
        return RedirectResponse("/mappings/changes", status_code=303)
    problems = validate(draft.files, settings.salesforce_metadata_file, settings.sage_metadata_file)
    if problems:
        flash(request, f"Not saved: the draft has {len(problems)} problem(s); fix them first.", "error")
        return RedirectResponse("/mappings/changes", status_code=303)
    version = history_of(request).commit(draft.files, user.name, "save")
    draft.discard()
    if version is None:
        flash(request, "Nothing to save: the draft is the same as the saved mapping.")
        return RedirectResponse("/mappings/changes", status_code=303)
    audit_log(request).record(
        user.name, "mapping.save", f"mappings version {version.number}", diff=version.diff
    )
    flash(request, f"Saved as version {version.number}. {_reload_note(request)}", "success")
    return RedirectResponse("/mappings/history", status_code=303)


@router.post("/discard")
def discard(request: Request, user: Mapper) -> Response:
    draft_of(request, user).discard()
    flash(request, "Your unsaved changes were discarded.")
    return RedirectResponse("/mappings/customers", status_code=303)


@router.get("/history")
def history(request: Request, user: Viewer) -> Response:
    return render(
        request,
        "mapping_history.html",
        user=user,
        nav="mappings",
        versions=history_of(request).versions(),
        can_save=user.can(MAPPER) and not console_settings(request).mappings_read_only,
    )


@router.post("/history/{number}/restore")
def restore(request: Request, user: Mapper, number: int) -> Response:
    if refused := _refused_read_only(request, "restored"):
        return refused
    try:
        version = history_of(request).restore(number, user.name)
    except KeyError:
        raise HTTPException(404, f"no version {number}") from None
    if version is None:
        flash(request, f"Version {number} is what is saved now: nothing to restore.")
    else:
        audit_log(request).record(
            user.name,
            "mapping.restore",
            f"mappings version {version.number} (= version {number})",
            diff=version.diff,
        )
        flash(
            request,
            f"Version {number} restored as version {version.number}. {_reload_note(request)}",
            "success",
        )
    return RedirectResponse("/mappings/history", status_code=303)


# --- the editor ---------------------------------------------------------------------------------


@router.get("/{entity_key}")
def editor(request: Request, user: Viewer, entity_key: str, direction: str = "to_sage") -> Response:
    entity = _entity(entity_key)
    way = _direction(direction)
    settings = console_settings(request)
    draft = draft_of(request, user)
    sf_meta, sage_meta = settings.salesforce_metadata_file, settings.sage_metadata_file
    problems = validate(draft.directory, sf_meta, sage_meta)
    view = EditorView.build(
        draft,
        entity,
        way,
        salesforce_fields(sf_meta, entity.salesforce_object),
        sage_columns(sage_meta, entity.sage_table),
        problems,
    )
    return render(
        request,
        "mapping_editor.html",
        user=user,
        nav="mappings",
        view=view,
        entities=ENTITIES,
        directions=DIRECTIONS,
        has_draft=draft.exists,
        can_edit=user.can(MAPPER),
        custom_types=CUSTOM_TYPES,
        unknown_rules=UNKNOWN_RULES,
    )


@router.get("/{entity_key}/preview")
def preview_page(request: Request, user: Viewer, entity_key: str, direction: str = "to_sage") -> Response:
    """The newest records of the entity's topic under the saved mapping and under the draft."""
    entity, way = _entity(entity_key), _direction(direction)
    settings = console_settings(request)
    draft = draft_of(request, user)
    page: dict[str, Any] = {"user": user, "nav": "mappings", "entity": entity, "direction": way}
    page.update(directions=DIRECTIONS, has_draft=draft.exists, count=settings.preview_records, rows=[])
    if entity.key not in TOPIC_OF_ENTITY:
        page["error"] = f"Preview of {entity.title.lower()} is not available: no topic carries them."
        return render(request, "mapping_preview.html", **page)
    page["topic"] = TOPIC_OF_ENTITY[entity.key]
    try:
        current, candidate = load_both(
            settings.mappings_dir,
            draft.directory,
            settings.salesforce_metadata_file,
            settings.sage_metadata_file,
        )
        page["rows"] = preview(
            cluster(request), entity.key, way, current, candidate, settings.preview_records
        )
    except MappingError as exc:
        page["error"] = "The draft does not load, so it cannot be previewed: " + "; ".join(exc.problems)
    except (KafkaException, TopicMissing, ScanTimeout) as exc:
        page["error"] = f"The records cannot be read from Kafka: {exc}"
    return render(request, "mapping_preview.html", **page)


@router.post("/{entity_key}/pair")
def pair_fields(
    request: Request,
    user: Mapper,
    entity_key: str,
    salesforce: Annotated[str, Form()],
    sage: Annotated[str, Form()],
    type: Annotated[str, Form()] = "text",
    name: Annotated[str, Form()] = "",
    default: Annotated[str, Form()] = "",
    direction: Annotated[str, Form()] = "both",
    view_direction: Annotated[str, Form()] = "to_sage",
) -> Response:
    entity = _entity(entity_key)
    try:
        made = pair(
            draft_of(request, user), entity, PairRequest(salesforce, sage, type, name, default, direction)
        )
    except ValueError as exc:
        flash(request, str(exc), "error")
        return _back(entity, view_direction)
    flash(request, f"Paired {salesforce} with {sage} as {made} (in your draft).", "success")
    return _back(entity, view_direction, f"#row-{made}")


@router.post("/{entity_key}/transform")
def transform(
    request: Request,
    user: Mapper,
    entity_key: str,
    entry: Annotated[str, Form()],
    overflow: Annotated[str, Form()] = "",
    default: Annotated[str, Form()] = "",
    map: Annotated[str, Form()] = "",
    view_direction: Annotated[str, Form()] = "to_sage",
) -> Response:
    entity = _entity(entity_key)
    try:
        set_transform(
            draft_of(request, user), entity, entry, overflow=overflow, default=default, map_name=map
        )
    except ValueError as exc:
        flash(request, str(exc), "error")
    else:
        flash(request, f"Transform of {entry.rsplit('.', 1)[-1]} updated (in your draft).", "success")
    return _back(entity, view_direction)


@router.post("/{entity_key}/unpair")
def unpair_fields(
    request: Request,
    user: Mapper,
    entity_key: str,
    name: Annotated[str, Form()],
    view_direction: Annotated[str, Form()] = "to_sage",
) -> Response:
    entity = _entity(entity_key)
    unpair(draft_of(request, user), entity, name)
    flash(request, f"Removed the pair {name} (in your draft).")
    return _back(entity, view_direction)


@router.post("/{entity_key}/value-map")
def value_map(
    request: Request,
    user: Mapper,
    entity_key: str,
    section: Annotated[str, Form()],
    name: Annotated[str, Form()],
    unknown: Annotated[str, Form()] = "error",
    source: Annotated[list[str] | None, Form()] = None,
    target: Annotated[list[str] | None, Form()] = None,
    view_direction: Annotated[str, Form()] = "to_sage",
    check: bool = False,
) -> Response:
    """Apply the grid to the draft; with `?check=true` only say what problems it would have."""
    entity = _entity(entity_key)
    draft = draft_of(request, user)
    edit = ValueMapEdit(section, name, source or [], target or [], unknown)
    if check:
        return _check_value_map(request, draft, entity, edit)
    try:
        set_value_map(draft, entity, edit)
    except ValueError as exc:
        flash(request, str(exc), "error")
    else:
        flash(request, f"Value map {name} updated (in your draft).", "success")
    return _back(entity, view_direction, f"#map-{name}")


def _check_value_map(request: Request, draft: MappingDraft, entity: Entity, edit: ValueMapEdit) -> Response:
    """The problems the grid as typed would have, as JSON, for the page to show while editing;
    the draft is not changed (the edit is tried on a scratch copy)."""
    settings = console_settings(request)
    with tempfile.TemporaryDirectory(prefix="sagesf-check-") as scratch:
        trial = draft.trial(Path(scratch))
        try:
            set_value_map(trial, entity, edit)
        except ValueError as exc:
            return JSONResponse({"problems": [str(exc)]})
        found = validate(trial.files, settings.salesforce_metadata_file, settings.sage_metadata_file)
    entry = f"{edit.section}.{edit.name}"
    about = [f"line {p.line}: {p.entry}: {p.reason}" for p in found if p.about(entity.file, entry)]
    return JSONResponse({"problems": about, "elsewhere": len(found) - len(about)})


@router.post("/{entity_key}/code-lookup")
def code_lookup(
    request: Request,
    user: Mapper,
    entity_key: str,
    source: Annotated[list[str] | None, Form()] = None,
    target: Annotated[list[str] | None, Form()] = None,
    view_direction: Annotated[str, Form()] = "to_sage",
) -> Response:
    entity = _entity(entity_key)
    if not entity.code_lookup:
        raise HTTPException(404, f"{entity.title} has no ProductCode lookup")
    set_code_lookup(draft_of(request, user), entity, source or [], target or [])
    flash(request, "ProductCode → ItemCode lookup updated (in your draft).", "success")
    return _back(entity, view_direction, "#code-lookup")
