"""The fake Slack's file uploads: the three steps of Slack's external upload.

https://docs.slack.dev/reference/methods/files.getUploadURLExternal : the app asks for an
upload URL (``filename``, ``length``) and gets ``upload_url`` + ``file_id``; it POSTs the
bytes there (raw, or a multipart form); ``files.completeUploadExternal`` (``files`` =
``[{"id", "title"}]``, ``channel_id``, ``thread_ts``, ``initial_comment``) shares them,
once. Here the upload URL is ``{sandbox}/slack/upload/v1/{key}`` on the fake itself; a
completion that names an unknown file id, a file whose bytes never arrived, or one already
completed is refused (``file_not_found``, with a ``detail``), as is an upload whose size
differs from the ``length`` announced. A completed share is a message with ``files`` in
the channel (or thread), the way Slack shows it, so ``conversations.history`` /
``conversations.replies`` and ``GET /_sandbox/slack/messages/{channel}`` show it; each file
object's ``url_private`` gives its bytes back (with the bot token, as Slack's does).
``GET /_sandbox/slack/files`` lists every upload (name, title, size, sha256, where shared),
completed or not; ``DELETE /_sandbox/slack`` forgets them.
"""

from __future__ import annotations

import hashlib
import mimetypes
import secrets
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.datastructures import UploadFile

from channels.slack.fake import (
    BOT_ID,
    BOT_USER_ID,
    METHODS,
    TEAM_ID,
    channel_problem,
    channel_store,
    file_store,
    json_param,
    new_ts,
    request_base,
)
from channels.slack.settings import SlackSettings
from sandbox.core import state

router = APIRouter(tags=["slack fake"])


def _get_upload_url(p: dict[str, Any]) -> dict[str, Any]:
    filename = str(p.get("filename") or "")
    try:
        length = int(str(p.get("length") or "0"))
    except ValueError:
        return {"ok": False, "error": "invalid_arguments"}
    if not filename or length <= 0:
        return {"ok": False, "error": "missing_argument"}  # Slack: e.g. a length of 0
    file_id = "F" + secrets.token_hex(5).upper()
    key = secrets.token_urlsafe(12)
    file_store[file_id] = {
        "id": file_id,
        "key": key,
        "filename": filename,
        "length": length,
        "alt_txt": p.get("alt_txt") or None,
        "data": None,
        "completed": False,
        "title": None,
        "shared": [],
        "initial_comment": None,
        "created": int(time.time()),
    }
    upload_url = f"{request_base.get()}slack/upload/v1/{key}"
    return {"ok": True, "upload_url": upload_url, "file_id": file_id}


@router.post("/slack/upload/v1/{key}", include_in_schema=False)
async def upload(key: str, request: Request) -> PlainTextResponse:
    """Slack's upload URL: raw bytes or a multipart form; 200 ``OK - <size>`` when taken."""
    failing = await state.maybe_fail("slack")
    if failing is not None:
        return PlainTextResponse("internal_error", status_code=failing.status_code)
    kept = next((f for f in file_store.values() if f["key"] == key), None)
    if kept is None:
        return PlainTextResponse("upload URL not found", status_code=404)
    if "multipart/form-data" in request.headers.get("content-type", ""):
        form = await request.form()
        part = next((v for v in form.values() if isinstance(v, UploadFile)), None)
        data = await part.read() if part is not None else b""
    else:
        data = await request.body()
    if len(data) != kept["length"]:
        message = f"got {len(data)} bytes, files.getUploadURLExternal said {kept['length']}"
        return PlainTextResponse(message, status_code=400)
    kept["data"] = data
    state.record("slack", "upload", {"file_id": kept["id"], "size": len(data)})
    return PlainTextResponse(f"OK - {len(data)}")


def _refused(detail: str) -> dict[str, Any]:
    return {"ok": False, "error": "file_not_found", "detail": detail}


def _file_object(kept: dict[str, Any]) -> dict[str, Any]:
    name = kept["filename"]
    url = f"{request_base.get()}slack/files-pri/{TEAM_ID}-{kept['id']}/{name}"
    shares: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for channel, ts, thread_ts in kept["shared"]:
        kind = "public" if channel.startswith("C") else "private"
        share: dict[str, Any] = {"ts": ts, "team_id": TEAM_ID}
        if thread_ts:
            share["thread_ts"] = thread_ts
        shares.setdefault(kind, {}).setdefault(channel, []).append(share)
    return {
        "id": kept["id"],
        "created": kept["created"],
        "timestamp": kept["created"],
        "name": name,
        "title": kept["title"] or name,
        "mimetype": mimetypes.guess_type(name)[0] or "application/octet-stream",
        "filetype": name.rsplit(".", 1)[-1].lower() if "." in name else "binary",
        "user": BOT_USER_ID,
        "user_team": TEAM_ID,
        "mode": "hosted",
        "is_external": False,
        "is_public": any(c.startswith("C") for c, _, _ in kept["shared"]),
        "size": len(kept["data"] or b""),
        "url_private": url,
        "url_private_download": url + "?download=1",
        "shares": shares,
    }


def _complete_upload(p: dict[str, Any]) -> dict[str, Any]:
    files = json_param(p.get("files"))
    if not isinstance(files, list) or not files:
        return {"ok": False, "error": "invalid_arguments"}
    channel = str(p.get("channel_id") or "")
    targets = [channel] if channel else [c for c in str(p.get("channels") or "").split(",") if c]
    thread_ts = str(p.get("thread_ts") or "") or None
    if thread_ts and len(targets) != 1:
        return {"ok": False, "error": "invalid_arguments"}  # a thread is in one channel
    for target in targets:
        problem = channel_problem(target)
        if problem:
            return {"ok": False, "error": problem}
    uploads = []
    for f in files:
        file_id = str(f.get("id") or "") if isinstance(f, dict) else ""
        kept = file_store.get(file_id)
        if kept is None:
            return _refused(f"no files.getUploadURLExternal gave the file id {file_id!r}")
        if kept["data"] is None:
            return _refused(f"{file_id} was never uploaded to its upload_url")
        if kept["completed"]:
            return _refused(f"{file_id} was completed already (this can only be done once)")
        uploads.append((kept, f.get("title")))
    comment = str(p.get("initial_comment") or "")
    for kept, title in uploads:
        kept.update(completed=True, title=title or kept["filename"], initial_comment=comment)
    for target in targets:
        ts = new_ts()
        for kept, _ in uploads:
            kept["shared"].append((target, ts, thread_ts))
        message: dict[str, Any] = {
            "type": "message",
            "text": comment,
            "files": [_file_object(kept) for kept, _ in uploads],
            "upload": True,
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "display_as_bot": False,
            "team": TEAM_ID,
            "ts": ts,
        }
        if thread_ts:
            message["thread_ts"] = thread_ts
        channel_store.setdefault(target, []).append(message)
    return {"ok": True, "files": [_file_object(kept) for kept, _ in uploads]}


METHODS["files.getUploadURLExternal"] = _get_upload_url
METHODS["files.completeUploadExternal"] = _complete_upload


@router.get("/slack/files-pri/{key}/{name}", include_in_schema=False)
async def download(key: str, name: str, request: Request) -> Response:
    """A shared file's bytes, for the bot token (Slack's ``url_private``)."""
    header = request.headers.get("authorization", "")
    expected = SlackSettings.get().slack_bot_token
    if not header.startswith("Bearer ") or (expected and header[7:].strip() != expected):
        return PlainTextResponse("not_authed", status_code=401)
    kept = file_store.get(key.rsplit("-", 1)[-1])
    if kept is None or not kept["completed"] or kept["filename"] != name:
        return PlainTextResponse("file_not_found", status_code=404)
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(kept["data"], media_type=ctype)


@router.get("/_sandbox/slack/files", include_in_schema=False)
async def files() -> list[dict[str, Any]]:
    """Every upload, oldest first: completed and shared where, or left unfinished."""
    return [
        {
            "id": kept["id"],
            "filename": kept["filename"],
            "title": kept["title"],
            "length": kept["length"],
            "uploaded": kept["data"] is not None,
            "sha256": hashlib.sha256(kept["data"]).hexdigest() if kept["data"] else None,
            "completed": kept["completed"],
            "initial_comment": kept["initial_comment"],
            "shared": [
                {"channel": c, "ts": ts, "thread_ts": thread_ts}
                for c, ts, thread_ts in kept["shared"]
            ],
        }
        for kept in file_store.values()
    ]
