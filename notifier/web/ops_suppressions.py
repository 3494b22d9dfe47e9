"""The suppression list on /ops/ (admins): who we stopped mailing and on which evidence,
addresses masked until an admin reveals one (logged), lifting a suppression, and the export."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for

from notifier.domain.suppressions import (
    SuppressionError,
    SuppressionQuery,
    lift,
    list_suppressions,
)
from notifier.models import Suppression
from notifier.ops.suppression_list import (
    mask_address,
    mask_addresses_in,
    query_from,
    suppressions_csv,
)
from notifier.timeutil import utcnow
from notifier.web.auth import admin_required, signed_in_editor
from notifier.web.context import db, settings

bp = Blueprint("ops_suppressions", __name__, url_prefix="/ops/suppressions")
log = logging.getLogger(__name__)
EXPORT_LIMIT = 100_000


def _list_page(query: SuppressionQuery, status: int = 200, error: str | None = None):
    rows = [] if error else list_suppressions(db(), query)
    page = render_template(
        "pages/ops/suppressions.html", rows=rows, query=query, error=error, mask=mask_address,
        notice=request.args.get("notice"),
    )  # fmt: skip
    return page, status


@bp.get("/")
@admin_required
def index():
    try:
        query = query_from(request.args)
    except SuppressionError as error:
        return _list_page(SuppressionQuery(), 400, str(error))
    return _list_page(query)


def _suppression(suppression_id: int) -> Suppression:
    row = db().get(Suppression, suppression_id)
    if row is None:
        abort(404, description="There is no such suppression.")
    return row


def _detail_page(row: Suppression, revealed: bool):
    report = row.report
    raw = report.raw if report is not None else None
    return render_template(
        "pages/ops/suppression.html", row=row, report=report, revealed=revealed,
        address=row.email if revealed else mask_address(row.email),
        raw=raw if revealed or raw is None else mask_addresses_in(raw),
        keep_days=settings().bounce_report_days,
    )  # fmt: skip


@bp.get("/<int:suppression_id>")
@admin_required
def show(suppression_id: int):
    return _detail_page(_suppression(suppression_id), revealed=False)


@bp.post("/<int:suppression_id>/reveal")
@admin_required
def reveal(suppression_id: int):
    """The address in full, for this answer only; who looked is logged."""
    row = _suppression(suppression_id)
    editor = signed_in_editor()
    log.warning("admin %s (editor %s) revealed the address of suppression %s",
                editor.email, editor.id, row.id)  # fmt: skip
    return _detail_page(row, revealed=True)


@bp.post("/<int:suppression_id>/lift")
@admin_required
def remove(suppression_id: int):
    """Remove from suppression: the reader gets email again (for the categories it kept)."""
    _suppression(suppression_id)  # 404 for an unknown one, 400 below for one lifted already
    try:
        row = lift(db(), suppression_id, signed_in_editor().email, utcnow())
    except SuppressionError as error:
        db().rollback()
        return _list_page(SuppressionQuery(), 400, str(error))
    db().commit()
    log.warning("admin editor %s lifted suppression %s", signed_in_editor().id, row.id)
    notice = f"Removed {mask_address(row.email)} from suppression."
    return redirect(url_for("ops_suppressions.index", notice=notice), 303)


@bp.get("/export.csv")
@admin_required
def export():
    """Every suppression in force (or all, with lifted=1), addresses in full; logged."""
    try:
        query = query_from(request.args)
    except SuppressionError as error:
        return _list_page(SuppressionQuery(), 400, str(error))
    wanted = SuppressionQuery(query.search, query.include_lifted, limit=EXPORT_LIMIT)
    rows = list_suppressions(db(), wanted)
    log.warning("admin editor %s exported %s suppressions", signed_in_editor().id, len(rows))
    return Response(
        suppressions_csv(rows), mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=suppressions.csv"},
    )  # fmt: skip
