"""Manual blocks: time a host blocks by hand, `POST/GET/DELETE /v1/hosts/{host}/blocks[/{id}]`.

They live beside the synced busy blocks and are read by the same busy queries, so a block
counts the moment its request commits, with no sync involved.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select

from models import ManualBlock
from webhook.api_hosts import HOST_PATH, MAX_ID
from webhook.api_json import json_object, string_field
from webhook.api_time import bad_parameter, format_rfc3339, parse_rfc3339, parse_window
from webhook.auth import require_host
from webhook.errors import ApiError
from webhook.request_scope import app_settings, request_session

api_blocks = Blueprint("api_blocks", __name__)

MIN_LENGTH = timedelta(minutes=1)
MAX_LENGTH = timedelta(days=366)
MAX_NOTE_LENGTH = 1000
BLOCK_PATH = HOST_PATH + f"/blocks/<int(max={MAX_ID}):block_id>"


def block_json(block: ManualBlock) -> dict[str, Any]:
    return {
        "id": block.id,
        "hostId": block.host_id,
        "start": format_rfc3339(block.start),
        "end": format_rfc3339(block.end),
        "note": block.note,
        "createdAt": format_rfc3339(block.created_at),
    }


def _find(host_id: int, block_id: int) -> ManualBlock:
    block = request_session().get(ManualBlock, block_id)
    if block is None or block.host_id != host_id:
        raise ApiError(404, "not_found", f"No block {block_id} on host {host_id}.")
    return block


@api_blocks.post(HOST_PATH + "/blocks")
def create(host_id: int) -> tuple[Response, int]:
    host = require_host(host_id)
    body = json_object({"start", "end", "note"}, required={"start", "end"})
    start = parse_rfc3339(body["start"], "start")
    end = parse_rfc3339(body["end"], "end")
    if end - start < MIN_LENGTH:
        raise bad_parameter("end", "a block must be at least one minute long (end after start)")
    if end - start > MAX_LENGTH:
        raise bad_parameter("end", "a block can be at most 366 days long")
    note = string_field(body, "note", max_length=MAX_NOTE_LENGTH, min_length=0) or ""
    session = request_session()
    block = ManualBlock(host_id=host.id, start=start, end=end, note=note)
    session.add(block)
    session.commit()
    return jsonify(block_json(block)), 201


@api_blocks.get(HOST_PATH + "/blocks")
def list_blocks(host_id: int) -> Response:
    host = require_host(host_id)
    query = select(ManualBlock).where(ManualBlock.host_id == host.id)
    if "timeMin" in request.args or "timeMax" in request.args:
        window = parse_window(
            request.args.get("timeMin"),
            request.args.get("timeMax"),
            # Listing is cheap; the window only filters, so allow up to the longest block.
            max(app_settings().max_window_days, MAX_LENGTH.days),
        )
        query = query.where(ManualBlock.start < window.end, ManualBlock.end > window.start)
    blocks = request_session().scalars(query.order_by(ManualBlock.start, ManualBlock.id))
    return jsonify({"blocks": [block_json(b) for b in blocks]})


@api_blocks.get(BLOCK_PATH)
def show(host_id: int, block_id: int) -> Response:
    host = require_host(host_id)
    return jsonify(block_json(_find(host.id, block_id)))


@api_blocks.delete(BLOCK_PATH)
def delete(host_id: int, block_id: int) -> tuple[str, int]:
    host = require_host(host_id)
    session = request_session()
    session.delete(_find(host.id, block_id))
    session.commit()
    return "", 204
