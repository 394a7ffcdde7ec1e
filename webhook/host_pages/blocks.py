"""Manual blocks from the form: create (with weekly repeats), edit, delete."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from flask import (
    Response,
    flash,
    redirect,
    render_template,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from models import Host, ManualBlock
from models.manual_blocks import add_blocks, move_block, remove_block
from rules.status_presenter import (
    host_zone,
    local_text,
)
from rules.week_grid import (
    clock_choices,
    clock_text,
    local_midnight,
    parse_week,
)
from webhook.errors import ApiError
from webhook.host_pages.block_form import (
    BlockForm,
    form_from_request,
    parse_form,
    utc_ranges,
)
from webhook.host_pages.common import (
    host_pages,
    html_page,
    signed_in,
)
from webhook.host_pages.week import render_week
from webhook.host_session import check_csrf, csrf_token
from webhook.request_scope import request_session


def week_of(day_text: str, host: Host) -> date:
    zone, _ = host_zone(host.time_zone)
    return parse_week(day_text, datetime.now(UTC).astimezone(zone).date())


@host_pages.post("/me/blocks")
def create_block() -> BaseResponse:
    host = signed_in()
    check_csrf()
    form = form_from_request()
    parsed = parse_form(form, allow_repeat=True)
    if isinstance(parsed, BlockForm):
        return render_week(host, week_of(form.day, host), parsed, 400)
    zone, _ = host_zone(host.time_zone)
    ranges = utc_ranges(parsed, form, zone)
    if isinstance(ranges, BlockForm):
        return render_week(host, week_of(form.day, host), ranges, 400)
    session = request_session()
    add_blocks(session, host.id, ranges, parsed.note)
    session.commit()
    first = parsed.days[0]
    times = f"{form.start}\u2013{form.end}"
    repeat = (
        f", every week until {parsed.days[-1].strftime('%a %d %b')}" if len(parsed.days) > 1 else ""
    )
    flash(f"Blocked {first.strftime('%a %d %b')} {times}{repeat}.")
    return redirect(url_for("host_pages.week_view", week=first.isoformat()), code=303)


def _own_block(host: Host, block_id: int) -> ManualBlock:
    block = request_session().get(ManualBlock, block_id)
    if block is None or block.host_id != host.id:
        raise ApiError(404, "not_found", "There is no such block on your page.")
    return block


def _form_of(block: ManualBlock, host: Host) -> BlockForm:
    zone, _ = host_zone(host.time_zone)
    day = block.start.astimezone(zone).date()
    spans_days = ""
    if block.end > local_midnight(day + timedelta(days=1), zone):
        spans_days = (
            f"{local_text(block.start, zone)} to {local_text(block.end, zone)}: longer than "
            "one day, so this form cannot change it. Delete it here, or change it with the API."
        )
    return BlockForm(
        day.isoformat(),
        clock_text(block.start, zone, day),
        clock_text(block.end, zone, day),
        block.note or "",
        "",
        {},
        block.id,
        spans_days,
    )


def _render_edit(host: Host, form: BlockForm, status: int = 200) -> Response:
    html = render_template(
        "host_block.html",
        host=host,
        form=form,
        clocks=clock_choices(),
        csrf_token=csrf_token(),
        zone_name=host_zone(host.time_zone)[1],
    )
    return html_page(html, status)


@host_pages.get("/me/blocks/<int:block_id>")
def edit_block(block_id: int) -> Response:
    host = signed_in()
    return _render_edit(host, _form_of(_own_block(host, block_id), host))


@host_pages.post("/me/blocks/<int:block_id>")
def update_block(block_id: int) -> BaseResponse:
    host = signed_in()
    block = _own_block(host, block_id)
    check_csrf()
    if _form_of(block, host).spans_days:
        raise ApiError(
            400, "spans_days", "This block is longer than a day; change it with the API."
        )
    form = form_from_request(block_id)
    parsed = parse_form(form, allow_repeat=False)
    if isinstance(parsed, BlockForm):
        return _render_edit(host, parsed, 400)
    zone, _ = host_zone(host.time_zone)
    ranges = utc_ranges(parsed, form, zone)
    if isinstance(ranges, BlockForm):
        return _render_edit(host, ranges, 400)
    session = request_session()
    start, end = ranges[0]
    move_block(session, block, start, end, parsed.note)
    session.commit()
    flash(f"Block changed to {parsed.days[0].strftime('%a %d %b')} {form.start}\u2013{form.end}.")
    return redirect(url_for("host_pages.week_view", week=parsed.days[0].isoformat()), code=303)


@host_pages.post("/me/blocks/<int:block_id>/delete")
def delete_block(block_id: int) -> BaseResponse:
    host = signed_in()
    block = _own_block(host, block_id)
    check_csrf()
    zone, _ = host_zone(host.time_zone)
    day = block.start.astimezone(zone).date()
    session = request_session()
    remove_block(session, block)
    session.commit()
    flash(f"Block on {day.strftime('%a %d %b')} deleted.")
    return redirect(url_for("host_pages.week_view", week=day.isoformat()), code=303)
