"""Every free-text step of every workflow meets a hostile string — a NUL, a C1 control, a bidi
override and decomposed (NFD) Vietnamese — on SQLite and on PostgreSQL, through the dispatcher
as a channel hands it over (an :class:`bot.core.Inbound`).

For each story: no unit fails (no apology), nothing stored anywhere in the database and nothing
shown to anyone carries a control or bidi character, and the cleaned text (NFC) is what was stored
and what the next person reads on their card. With the sanitiser of ``Inbound`` removed, SQLite
stores the raw characters and PostgreSQL refuses the commit: every story fails."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select as sa_select
from sqlmodel import SQLModel, col, select

from bot.core import Reply
from media.synth import make_archive
from tests.helpers import inbound

# Characters that must never be stored or shown: C0 but tab and newline, DEL, C1, bidi controls,
# BOM, lone surrogates (spelled out here, not imported from the code under test).
FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff"
                       "\ud800-\udfff]")
APOLOGY = "Xin lỗi, hệ thống"  # the dispatcher's "Sorry, something went wrong on our side"
NFD_TRUONG = unicodedata.normalize("NFD", "trường")
JPEG = b"\xff\xd8\xff\xe0 a photo of the gate" * 20
REC_START = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 08:00 in Hà Nội; the clock says 09:00


def hostile(tag: str) -> str:
    """A NUL, a C1 control (CSI), a right-to-left override, decomposed letters."""
    return f"Kiểm tra\x00 {tag}\x9b cổng\u202e {NFD_TRUONG}"


def clean(tag: str) -> str:
    """What :func:`hostile` must become (NFC, nothing hidden)."""
    return f"Kiểm tra {tag} cổng trường"


CAST = {
    "t": ("Nguyễn Thị Vân", ["teacher"], {"unit": "Tổ 1"}),
    "p": ("Trần Văn Đức", ["principal"]),
    "v": ("Lê Thị Phó", ["vice_principal"]),
    "it": ("Lê Văn Tin", ["it"]),
    "g": ("Vũ Văn Tuấn", ["guard"], {"unit": "Tổ bảo vệ"}),
    "gl": ("Bùi Đức Thắng", ["guard_lead"], {"unit": "Tổ bảo vệ"}),
    "e": ("Ngô Thị Thu Trang", ["equipment"]),
    "bh": ("Phạm Văn Biên", ["board_head"]),
    "s": ("Hoàng Thư Ký", ["secretary"]),
    "dh": ("Đỗ Thị Tổ", ["dept_head"], {"unit": "Tổ 1"}),
}


@dataclass
class Story:
    """``script``, one event a line: ``"t/camera 8h"`` (a command and its arguments), ``"t>text"``
    (typed), ``"t!payload"`` (a button), ``"g#caption"`` (a photo with a caption, its file name
    hostile too), ``"~2026-11-30T02:00"`` (the clock moves, one scheduler tick). ``{H:tag}`` is
    :func:`hostile` of that tag, to be stored; ``{Q:tag}`` the same for what is only read (a
    search, a date, a number: a polite reply, no failure); ``{approval}``, ``{incident}`` … the
    newest id of that record. ``seen_by``: tag → who must read it cleaned; ``expect``: tag → what is
    stored when that is not ``clean(tag)``."""

    id: str
    script: list[str]
    seen_by: dict[str, str] = field(default_factory=dict)
    extract: bool = False  # footage clips are cut (ffmpeg) when approved
    expect: dict[str, str] = field(default_factory=dict)


def _latest(model: Any) -> Any:
    def go(s: Any) -> int:
        return s.exec(select(model.id).order_by(col(model.id).desc())).first() or 0
    return go


def _latest_ids() -> dict[str, Any]:
    from bot.flows.accounts.models import Account
    from bot.flows.articles.models import Article
    from bot.flows.equipment.models import EquipmentBatch, EquipmentChange, RepairRequest
    from bot.flows.footage.models import FootageRequest
    from bot.flows.incidents.models import Incident
    from storage.models import Approval

    return {"approval": _latest(Approval), "incident": _latest(Incident), "footage": _latest(FootageRequest),
            "article": _latest(Article), "change": _latest(EquipmentChange), "batch": _latest(EquipmentBatch),
            "repair": _latest(RepairRequest), "account": _latest(Account)}


STORIES: list[Story] = [
    Story("footage: the “Khác” purpose; the clip kept as evidence with a reason", [
        "t/camera", "t>cong", "t!c:today", "t>8h00", "t!c:1", "t!c:other",
        "t>{H:purpose}", "t!c:send",
        "p!ap:{approval}:ok",
        "it!fx:{footage}:keep", "it>{H:evidence}",
    ], seen_by={"purpose": "p"}, extract=True),
    Story("footage: rejected with a reason", [
        "t/camera", "t>cong", "t!c:today", "t>8h00", "t!c:1", "t!c:other", "t>Xem lại sự việc", "t!c:send",
        "p!ap:{approval}:no", "p>{H:reason}",
    ], seen_by={"reason": "t"}),
    Story("incident: place, description, more text, resolution note", [
        "g/suco", "g>{Q:kind}", "g!c:security", "g!c:urgent", "g>{H:place}", "g>{H:description}", "g>{H:more}",
        "g!c:send", "gl!ic:{incident}:ack", "gl!ic:{incident}:done", "gl>{H:note}",
    ], seen_by={"place": "p", "description": "gl", "more": "gl", "note": "g"}),
    Story("incident: the misused account", [
        "t/suco", "t!c:it_account", "t>{H:account}", "t!c:normal", "t!c:a6", "t>Tài khoản bị dùng", "t!c:send",
    ], seen_by={"account": "it"}),
    Story("incident: a guard's photo with a caption", [
        "g#{H:caption}", "g!c:security", "g!c:normal", "g!c:a0", "g!c:send",
    ], seen_by={"caption": "gl", "photo": "gl"}),
    Story("planned interruption: system and reason", [
        "it/ngungdichvu", "it>{H:system}", "it>17h30", "it>18h30", "it>{H:outage}", "it!c:send",
    ], seen_by={"system": "t", "outage": "t"}),
    Story("article: title, source, body; returned with a note", [
        "t/baiviet", "t>{H:title}", "t>{Q:category}", "t!c:cat:report", "t>{Q:unit}", "t>cong doan",
        "t>{Q:origin}", "t!c:collected", "t>{H:source}", "t>{Q:event}", "t>21/11", "t>{H:body}", "t>Xong",
        "t#{Q:caption}", "t!c:done", "t!c:send",
        "s!ar:{article}:ret", "s>{H:returned}",
    ], seen_by={"title": "s", "source": "s", "body": "s", "returned": "t"}),
    Story("article: the secretary's edit, then a rejection with a reason", [
        "t/baiviet", "t>Lễ khai giảng năm học mới", "t!c:cat:report", "t>cong doan", "t!c:own", "t>21/11",
        "t>Sáng 21/11, trường tổ chức lễ khai giảng.", "t>Xong", "t!c:done", "t!c:send",
        "s!ar:{article}:edit", "s>{H:edited}", "s>Xong", "s>{H:newtitle}",
        "s!ar:{article}:fwd", "bh/xembai {article}", "bh!ap:{approval}:no", "bh>{H:rejected}",
    ], seen_by={"edited": "bh", "newtitle": "bh", "rejected": "t"}),
    Story("article: approved, published with a link", [
        "t/baiviet", "t>Lễ khai giảng năm học mới", "t!c:cat:report", "t>cong doan", "t!c:own", "t>21/11",
        "t>Sáng 21/11, trường tổ chức lễ khai giảng.", "t>Xong", "t!c:done", "t!c:send",
        "s!ar:{article}:fwd", "bh!ap:{approval}:ok", "s!ar:{article}:pub",
        "s>{Q:url}", "s>thuongthanh.edu.vn/tin-tuc/\x00khai-giang\u202e.html",
    ], expect={"url": "https://thuongthanh.edu.vn/tin-tuc/khai-giang.html"}),
    Story("approvals: a note added to a request", [
        "t/camera", "t>cong", "t!c:today", "t>8h00", "t!c:1", "t!c:security", "t!c:send",
        "p!ap:{approval}:note", "p>{H:apnote}",
    ], seen_by={"apnote": "p"}),
    Story("equipment: a damage note sent back with a reason", [
        "t/thietbi", "t>TB-0003", "t!c:damaged", "t>1", "t!c:today", "t>{H:damage}", "t!c:skip", "t!c:save",
        "e!eqk:{change}:no", "e>{H:sentback}",
    ], seen_by={"damage": "e", "sentback": "t"}),
    Story("equipment: a new item's name, category and room; the monthly review rejects it with a reason", [
        "e/thietbi", "e>{Q:find}", "e!c:new", "e>{H:code}", "e>{H:itemname}", "e>{H:category}", "e>{H:room}", "e>2",
        "e!c:today", "e>{H:newnote}", "e!c:skip", "e!c:save",
        "~2026-11-30T02:00", "p/duyetthietbi", "p!eqb:{batch}:items", "p!c:no", "p>{H:review}",
    ], seen_by={"code": "p", "itemname": "p", "newnote": "p", "review": "e"}),
    Story("equipment: borrowed for a class", [
        "t/muon", "t>{Q:item}", "t>TB-0003", "t>{H:klass}", "t>{Q:qty}", "t>2", "t/tra",
    ], expect={"klass": clean("klass")}),
    Story("equipment: an IT repair request, approved, closed with a note", [
        "t/suachua", "t>TB-0001", "t!c:repair", "t>{H:repair}", "t!c:skip", "t!c:send",
        "p!ap:{approval}:ok", "it!eqr:{repair}:take", "it!eqr:{repair}:done", "it>{H:resolved}",
    ], seen_by={"repair": "p", "resolved": "t"}),
    Story("accounts: a user name recorded, the account locked with a reason", [
        "it/quanlytk", "it>{Q:search}", "it>Vân", "it!c:p1", "it!c:add", "it!c:s:email", "it>{H:username}",
        "it!c:l{account}", "it>{H:lock}",
    ], seen_by={"lock": "t"}, expect={"username": clean("username").replace(" ", "")}),
    Story("profile: the unit typed", [
        "t/hoso", "t!c:unit", "t>{H:unit}", "t!c:email", "t>{Q:email}", "t>van\x00nt@truong.edu.vn\u202e",
    ], expect={"email": "vannt@truong.edu.vn"}),
    Story("commands' arguments, delegation, the calendar's and the articles' settings", [
        "p/uyquyen", "p>{Q:who}", "p>Phó", "p>{Q:range}", "p/huy",
        "p/lich", "p!c:settings", "p!c:r:equipment.monthly", "p>{Q:choice}", "p!c:day", "p>{Q:day}", "p>26",
        "p!c:hour", "p>{Q:hour}", "p>9", "p!c:roles", "p>{Q:roles}", "p/huy",
        "stranger/start {Q:code}", "s/thongke {Q:period}", "p/baocao_thietbi {Q:period2}", "p>{Q:period3}",
        "t/xembai {Q:id}", "p/caidat_baiviet", "p!c:rate", "p>{Q:rate}", "p>30.000",
        "p!c:domains", "p>{Q:domains}", "p>thuong\x00thanh.edu.vn\u202e",
    ], expect={"domains": "thuongthanh.edu.vn"}),
    Story("incident: sent up with a note (the DOCX to the authority)", [
        "g/suco", "g!c:security", "g!c:normal", "g!c:a2", "g>Có người lạ ở sân", "g!c:send",
        "gl!ic:{incident}:up", "gl>{H:up}",
    ], seen_by={"up": "p"}),
]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("frigate")
    make_archive(root, "cong", REC_START, 120, segment_seconds=60, fps=2)
    return root


def _texts(rt: Any) -> Iterator[tuple[str, str]]:
    """(chat, text) of everything sent or edited, button labels included."""
    ch = rt.test_channel
    replies: list[tuple[str, Reply]] = [(o.chat_id, o.reply) for o in ch.sent]
    replies += [(ref.chat_id, r) for ref, r in ch.edits]
    for chat, reply in replies:
        yield chat, reply.text
        for row in reply.buttons:
            for b in row:
                yield chat, b.label + " " + b.payload
        if reply.file is not None:
            yield chat, reply.file.file_name
            if reply.file.path.endswith(".docx"):  # the incident report to the authority
                yield chat, _docx_text(reply.file.path)


def _docx_text(path: str) -> str:
    from docx import Document

    doc = Document(path)
    cells = [c.text for t in doc.tables for r in t.rows for c in r.cells]
    return "\n".join([p.text for p in doc.paragraphs] + cells)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _stored(rt: Any) -> list[tuple[str, str]]:
    """(table.column, value) of every string the database holds (JSON columns walked)."""
    def go(s: Any) -> list[tuple[str, str]]:
        out = []
        for table in SQLModel.metadata.sorted_tables:
            for row in s.execute(sa_select(table)).mappings():
                for name, value in row.items():
                    out += [(f"{table.name}.{name}", v) for v in _strings(value)]
        return out
    return rt.db.run_sync(go)


@pytest.mark.parametrize("story", STORIES, ids=[s.id for s in STORIES])
async def test_hostile_text_in_every_free_text_step(runtime: Any, clock: Any, archive: Any, story: Story) -> None:
    from bot.engine.reminders import Scheduler
    from bot.flows.equipment.models import EquipmentItem
    from bot.flows.footage.models import Camera

    cast = runtime.enrol(CAST)

    def seed(s: Any) -> None:
        s.add(Camera(school_id=cast.school_id, code="cong", name="Cổng chính", unit="Tổ bảo vệ",
                     source=f"frigate:{archive}"))
        s.add(EquipmentItem(school_id=cast.school_id, code="TB-0001", name="Máy chiếu Epson EB-X06", category="CNTT",
                            room="Phòng Tin học", quantity=2, damaged=0, is_it=True))
        s.add(EquipmentItem(school_id=cast.school_id, code="TB-0003", name="Bộ lắp ghép mô hình kĩ thuật",
                            category="Công nghệ", room="Kho thiết bị", quantity=20, damaged=2))
    runtime.db.run_sync(seed)
    chat = {who: str(m.chat) for who, m in cast.items()}
    ids = _latest_ids()
    transcript: list[str] = []
    for line in story.script:
        who, kind, rest = re.match(r"^(\w*)([/>!#~])(.*)$", line, re.DOTALL).groups()  # type: ignore[union-attr]
        rest = re.sub(r"\{[HQ]:(\w+)\}", lambda m: hostile(m.group(1)), rest)
        rest = re.sub(r"\{(\w+)\}", lambda m: str(runtime.db.run_sync(ids[m.group(1)])), rest)
        if kind == "~":  # the clock moves; one scheduler tick (reminders, monthly batches)
            clock.t = datetime.fromisoformat(rest).replace(tzinfo=UTC)
            sched = Scheduler(runtime)
            try:
                await sched.tick()
            finally:
                sched.leadership.release()
            continue
        if kind == "#":  # a photo with a caption, its file name hostile too
            ref = runtime.media.store_bytes(JPEG, kind="photo", mime="image/jpeg", file_name=hostile("photo") + ".jpg")
            msg = inbound(chat[who], text=rest, files=(ref,))
        elif kind == "/":
            command, _, args = rest.partition(" ")
            msg = inbound(chat.get(who, who), command=command, args=args)
        elif kind == ">":
            msg = inbound(chat[who], text=rest)
        else:
            msg = inbound(chat[who], payload=rest)
        before = len(runtime.test_channel.sent)
        await runtime.dispatcher.handle(msg)
        if story.extract:
            await runtime.dispatcher.drain()
        transcript.append(f"{line!r}")
        transcript += [f"   → {o.chat_id}: {o.reply.text[:300]!r}" for o in runtime.test_channel.sent[before:]]
    await runtime.dispatcher.drain()
    log = "\n".join(transcript)
    print(log)  # shown by pytest -rP: which step each line reached

    shown = list(_texts(runtime))
    assert not [t for _, t in shown if APOLOGY in t], log
    assert not [(c, t) for c, t in shown if FORBIDDEN.search(t)], log
    stored = _stored(runtime)
    assert not [(where, v) for where, v in stored if FORBIDDEN.search(v)]
    tags = re.findall(r"\{H:(\w+)\}", "\n".join(story.script))
    for tag in [*tags, *(t for t in story.expect if t not in tags)]:
        want = story.expect.get(tag, clean(tag))
        assert [where for where, v in stored if want in v], f"{tag} was not stored\n{log}"
    for tag, who in story.seen_by.items():
        assert [t for c, t in shown if c == chat[who] and clean(tag) in t], f"{who} did not read {tag}\n{log}"
