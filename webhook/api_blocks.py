"""Manual blocks: time a host blocks by hand, `POST/GET/DELETE /v1/hosts/{host}/blocks[/{id}]`.

They live beside the synced busy blocks and are read by the same busy queries, so a block
counts the moment its request commits, with no sync involved.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy import select

from models import ManualBlock
from models.manual_blocks import add_blocks, remove_block
from webhook.api_hosts import HOST_PATH
from webhook.api_input import parse_body, parse_query
from webhook.api_schemas import MAX_ID, BlockListQuery, ManualBlockCreate
from webhook.api_time import format_rfc3339
from webhook.auth import require_host
from webhook.errors import ApiError
from webhook.request_scope import app_settings, request_session

api_blocks = Blueprint("api_blocks", __name__)

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
    body = parse_body(ManualBlockCreate)
    session = request_session()
    [block] = add_blocks(session, host.id, [(body.start, body.end)], body.note)
    session.commit()
    return jsonify(block_json(block)), 201


@api_blocks.get(HOST_PATH + "/blocks")
def list_blocks(host_id: int) -> Response:
    host = require_host(host_id)
    query = select(ManualBlock).where(ManualBlock.host_id == host.id)
    window = parse_query(BlockListQuery, max_window_days=app_settings().max_window_days)
    if window.time_min is not None and window.time_max is not None:
        query = query.where(ManualBlock.start < window.time_max, ManualBlock.end > window.time_min)
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
    block = _find(host.id, block_id)
    remove_block(session, block)
    session.commit()
    return "", 204
