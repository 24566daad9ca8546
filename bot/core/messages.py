"""Message types shared by the channels and the workflows: what comes in (:class:`Inbound`) and
what goes out (:class:`Reply`, :class:`Outbound`, buttons)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.text import sanitize, sanitize_line
from storage.models import (
    utcnow,
)

log = logging.getLogger(__name__)


class ChannelName(StrEnum):
    TELEGRAM = "telegram"
    ZALO_OA = "zalo_oa"
    ZALO_BOT = "zalo_bot"
    WEB = "web"


def _sanitize_fields(obj: object, lines: tuple[str, ...], texts: tuple[str, ...] = ()) -> None:
    """Pass the text fields of a frozen dataclass through :func:`bot.text.sanitize_line` (``lines``)
    or :func:`bot.text.sanitize` (``texts``, which keep their line breaks), in place:
    ``object.__setattr__`` is how a frozen dataclass sets its own fields."""
    for names, fn in ((lines, sanitize_line), (texts, sanitize)):
        for name in names:
            value = getattr(obj, name)
            if isinstance(value, str):
                clean = fn(value)
                if clean is not value:
                    object.__setattr__(obj, name, clean)


_INBOUND_LINES = ("user_id", "chat_id", "update_key", "command", "payload", "message_id", "display_name", "language")
_INBOUND_TEXTS = ("text", "args")


@dataclass(frozen=True, slots=True)
class Contact:
    """A shared phone contact. ``user_id`` is the platform id of the contact's owner, if known."""

    phone: str
    user_id: str | None = None
    first_name: str = ""
    last_name: str = ""

    def __post_init__(self) -> None:
        _sanitize_fields(self, ("phone", "user_id", "first_name", "last_name"))


@dataclass(frozen=True, slots=True)
class FileRef:
    """An attachment already fetched into the media store (platform file ids never reach the core).

    ``error`` is set instead of ``path`` when it could not be fetched (``too_big``, ``failed``)."""

    kind: str  # photo | video | voice | audio | document | video_note
    path: str | None
    mime: str = ""
    size: int = 0
    sha256: str = ""
    file_name: str = ""
    error: str | None = None

    def __post_init__(self) -> None:
        _sanitize_fields(self, ("mime", "file_name"))


@dataclass(frozen=True, slots=True)
class Inbound:
    channel: str
    user_id: str
    chat_id: str
    update_key: str
    text: str | None = None
    command: str | None = None
    args: str = ""
    payload: str | None = None
    contact: Contact | None = None
    location: tuple[float, float] | None = None
    files: tuple[FileRef, ...] = ()
    message_id: str | None = None
    display_name: str = ""
    language: str | None = None
    forwarded: bool = False
    at: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        # The boundary: whatever a channel read from outside passes bot.text.sanitize here (a NUL
        # would be stored raw by SQLite and refused by PostgreSQL; a bidi override would disguise
        # a card). Contact and FileRef clean their own text fields the same way.
        _sanitize_fields(self, _INBOUND_LINES, _INBOUND_TEXTS)

    @property
    def is_empty(self) -> bool:
        return not (self.text or self.command or self.payload or self.contact or self.location or self.files)


@dataclass(frozen=True, slots=True)
class Button:
    label: str
    payload: str

    def __post_init__(self) -> None:
        if len(self.payload.encode()) > 64:
            raise ValueError(f"button payload over 64 bytes: {self.payload[:20]}…")


Keyboard = tuple[tuple[Button, ...], ...]


def keyboard(*rows: Sequence[Button] | Button, per_row: int | None = None) -> Keyboard:
    """Build rows; a flat list of buttons is wrapped ``per_row`` to a row."""
    flat = [b for b in rows if isinstance(b, Button)]
    if flat and len(flat) == len(rows):
        n = per_row or 1
        return tuple(tuple(flat[i:i + n]) for i in range(0, len(flat), n))
    return tuple(tuple(r) if not isinstance(r, Button) else (r,) for r in rows)


@dataclass(frozen=True, slots=True)
class MessageRef:
    channel: str
    chat_id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class OutFile:
    kind: str  # photo | video | document
    path: str
    file_name: str = ""
    mime: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    """What to show one person (channel-neutral). ``text`` is safe HTML (see bot.i18n)."""

    text: str
    buttons: Keyboard = ()
    file: OutFile | None = None
    protect: bool = False
    ask_contact: str | None = None  # label of a one-tap "share my phone number" button
    remove_keyboard: bool = False
    track: tuple[str, str] | None = None  # (ref_kind, ref_id): remember where it was sent
    delete_after: int | None = None  # seconds; the message is deleted from the chat then
    edit: MessageRef | None = None  # edit this message instead of sending a new one


@dataclass(frozen=True, slots=True)
class Outbound:
    channel: str
    chat_id: str
    reply: Reply
    person_id: int | None = None


def reply_to_payload(reply: Reply) -> dict[str, Any]:
    """A JSON form of a Reply, so a queued message survives a restart."""
    out: dict[str, Any] = {"text": reply.text,
                           "buttons": [[[b.label, b.payload] for b in row] for row in reply.buttons]}
    if reply.protect:
        out["protect"] = True
    if reply.file is not None:
        f = reply.file
        out["file"] = {"kind": f.kind, "path": str(f.path), "file_name": f.file_name, "mime": f.mime}
    if reply.ask_contact is not None:
        out["ask_contact"] = reply.ask_contact
    if reply.remove_keyboard:
        out["remove_keyboard"] = True
    if reply.track is not None:
        out["track"] = list(reply.track)
    if reply.delete_after:
        out["delete_after"] = reply.delete_after
    if reply.edit is not None:
        e = reply.edit
        out["edit"] = [e.channel, e.chat_id, e.message_id]
    return out


def payload_to_reply(p: Mapping[str, Any]) -> Reply:
    buttons = tuple(tuple(Button(str(lbl), str(pl)) for lbl, pl in row) for row in p.get("buttons") or [])
    f = p.get("file")
    file = OutFile(kind=str(f["kind"]), path=str(f["path"]), file_name=str(f.get("file_name") or ""),
                   mime=str(f.get("mime") or "")) if isinstance(f, Mapping) else None
    track = (str(p["track"][0]), str(p["track"][1])) if p.get("track") else None
    edit = MessageRef(*(str(x) for x in p["edit"])) if p.get("edit") else None
    ask = p.get("ask_contact")
    delete_after = p.get("delete_after")
    return Reply(str(p.get("text", "")), buttons=buttons, file=file, protect=bool(p.get("protect")),
                 ask_contact=str(ask) if ask is not None else None, remove_keyboard=bool(p.get("remove_keyboard")),
                 track=track, delete_after=int(delete_after) if delete_after else None, edit=edit)
