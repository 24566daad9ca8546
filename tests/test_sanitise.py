"""The one sanitiser of text from outside (bot/text.py ``sanitize``): what it removes and keeps,
that every :class:`bot.core.Inbound` (and its Contact and FileRef) passes it, that spreadsheet cells
of the staff, camera and equipment imports pass it, and one story end to end through the real
python-telegram-bot on the fake Bot API (SQLite and PostgreSQL): the footage “Khác” purpose with a
NUL of issue 20 reaches the principal's card clean."""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlmodel import col, select

from bot.core import Inbound
from bot.core.messages import Contact, FileRef
from bot.i18n import Translator
from bot.text import sanitize, sanitize_line
from media.synth import make_archive
from storage.db import Database
from storage.models import Person
from storage.staff_import import import_staff_file
from tests.fakes.tg_harness import payloads

# What must never survive (spelled out here, not imported from the code under test).
FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff"
                       "\ud800-\udfff]")
NFD = unicodedata.normalize("NFD", "Kiểm tra cổng trường")


# -- the function ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "clean"), [
    ("Kiểm tra\x00 cổng trường", "Kiểm tra cổng trường"),  # NUL (issue 20)
    ("a\x01b\x07c\x1bd\x1fe", "abcde"),  # C0
    ("a\x7fb", "ab"),  # DEL
    ("a\x80b\x9bc\x9fd", "abcd"),  # C1
    ("abc\u202egnp.exe", "abcgnp.exe"),  # a right-to-left override would show “abcexe.png”
    ("\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069x", "x"),  # embeddings, overrides, isolates
    ("\u200ehi\u200f\u061c", "hi"),  # direction marks
    ("\ufeffxin chào", "xin chào"),  # a BOM at the start of pasted text
    ("a\ud800b", "ab"),  # a lone surrogate (JSON "\ud800")
    ("dòng 1\r\ndòng 2\rdòng 3\x85dòng 4\u2028dòng 5\u2029dòng 6",
     "dòng 1\ndòng 2\ndòng 3\ndòng 4\ndòng 5\ndòng 6"),  # every line break becomes \n
    ("cột\tcột\ndòng", "cột\tcột\ndòng"),  # tab and newline stay
    (NFD, "Kiểm tra cổng trường"),  # NFC
    ("Tie\u0302\x00\u0301ng", "Tiếng"),  # a control between a letter and its marks: removed, then composed
    ("👨\u200d👩\u200d👧 \u200c", "👨\u200d👩\u200d👧 \u200c"),  # joiners stay (emoji)
    ("\x00\x01\u202e", ""),  # nothing left
    ("  \x00 ", "   "),  # whitespace only: kept (callers trim), no control left
    ("", ""),
])
def test_sanitize(raw: str, clean: str) -> None:
    out = sanitize(raw)
    assert out == clean
    assert unicodedata.is_normalized("NFC", out)


def test_sanitize_line_has_no_line_breaks() -> None:
    assert sanitize_line("Nguyễn\nThị\tVân\r\n\x85✅ Đã duyệt") == "Nguyễn Thị Vân  ✅ Đã duyệt"


def test_clean_text_is_returned_as_it_is() -> None:
    """The fast path: nothing to remove and already NFC gives the same object back."""
    for s in ("/camera", "Kiểm tra cổng trường lúc 8 giờ", "dòng 1\ndòng 2\tx", "👍"):
        assert sanitize(s) is s


@given(st.text())
@example("\x00\u202e" + NFD)
def test_sanitize_property(raw: str) -> None:
    out = sanitize(raw)
    assert not FORBIDDEN.search(out)
    assert unicodedata.is_normalized("NFC", out)
    assert sanitize(out) == out  # idempotent
    out.encode("utf-8")  # storable: no lone surrogate
    assert "\r" not in out


# -- the boundary: Inbound, Contact, FileRef ----------------------------------------------------------
def test_inbound_cleans_every_field_from_outside() -> None:
    msg = Inbound(channel="telegram", user_id="1\x00", chat_id="1\u202e", update_key="k\x00",
                  text="Kiểm tra\x00 cổng\x9b trường\r\n" + NFD, command="camera\x00", args="8h\x00\n30",
                  payload="ap:1:ok\x00", message_id="7\x00", display_name="Vân\u202e\nĐã duyệt", language="vi\x00",
                  contact=Contact(phone="0912\x00345678", user_id="9\x00", first_name="A\u202eB", last_name="C\x85D"),
                  files=(FileRef(kind="document", path=None, mime="application/pdf\x00",
                                 file_name="hoa-don\u202efdp.exe"),))
    assert msg.text == "Kiểm tra cổng trường\n" + unicodedata.normalize("NFC", NFD)
    assert (msg.user_id, msg.chat_id, msg.update_key, msg.command, msg.args, msg.payload, msg.message_id,
            msg.language) == ("1", "1", "k", "camera", "8h\n30", "ap:1:ok", "7", "vi")
    assert msg.display_name == "Vân Đã duyệt"  # one line: a name cannot add lines to a card
    assert msg.contact == Contact(phone="0912345678", user_id="9", first_name="AB", last_name="C D")
    assert msg.files[0].file_name == "hoa-donfdp.exe" and msg.files[0].mime == "application/pdf"
    again = dataclasses.replace(msg, text="x\x00y")  # a channel that replaces a field goes through it too
    assert again.text == "xy"
    assert Inbound(channel="t", user_id="1", chat_id="1", update_key="k", text="\x00").is_empty


# -- spreadsheet cells: staff (and, through the same reader, cameras and equipment) ----------------------
def test_staff_import_cleans_cells(db: Database, tmp_path: Path) -> None:
    """A NUL cannot reach the database from a spreadsheet (a CSV with one is refused as not text; an
    xlsx cannot hold one), but C1 controls and bidi overrides can: they are removed like in messages."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Họ và tên", "Vai trò", "Số điện thoại", "Tổ"])
    ws.append(["Nguyễn Thị\x9b Vân\u202e", "Giáo viên", "0912345678", NFD + "\u2066"])
    wb.save(tmp_path / "staff.xlsx")
    csv = tmp_path / "staff.csv"
    csv.write_bytes("Họ và tên,Vai trò,Số điện thoại,Tổ\r\nTrần Văn\u200f Đức\x07,Hiệu trưởng,0987654321,Tổ\x85 1\r\n"
                    .encode())
    tr = Translator("vi")
    for f in (tmp_path / "staff.xlsx", csv):
        report = import_staff_file(db, str(f), school_name="Trường Tiểu học Ngọc Thụy", dry_run=False, tr=tr)
        assert report.ok, report.render(tr)
    people = db.run_sync(lambda s: list(s.exec(select(Person).order_by(col(Person.id)))))
    assert [(p.full_name, p.unit) for p in people] == [("Nguyễn Thị Vân", "Kiểm tra cổng trường"),
                                                       ("Trần Văn Đức", "Tổ 1")]


# -- end to end through Telegram --------------------------------------------------------------------
REC_START = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 08:00 in Hà Nội; the test clock says 09:00


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("frigate")
    make_archive(root, "cong", REC_START, 120, segment_seconds=60, fps=2)
    return root


@pytest.fixture
def runtime_options() -> dict[str, Any]:
    return {"workflows": ("footage",)}


async def test_nul_in_the_footage_purpose_through_telegram(telegram: Any, archive: Path) -> None:
    """Issue 20: “Kiểm tra\\x00 cổng trường” as the “Khác” purpose stored raw on SQLite and failed the
    unit on PostgreSQL. Now the request is made and the principal's card reads clean."""
    from bot.flows.footage.models import Camera, FootageRequest

    tg = telegram
    cast = tg.enrol({"the teacher": ("Nguyễn Thị Vân", ["teacher"]), "the principal": ("Trần Văn Đức", ["principal"])})
    teacher, principal = cast["the teacher"].chat, cast["the principal"].chat
    tg.seed(lambda s: s.add(Camera(school_id=cast.school_id, code="cong", name="Cổng chính", unit="Tổ bảo vệ",
                                   source=f"frigate:{archive}")))
    tg.fake.user(teacher, first_name="Vân\x00\u202e", last_name="Nguyễn\x9b")  # the name from Telegram, too
    await tg.command(teacher, "camera")
    await tg.send(teacher, "cong")
    await tg.tap(teacher, "c:today")
    await tg.send(teacher, "8h00")
    await tg.tap(teacher, "c:1")
    await tg.tap(teacher, "c:other")
    summary = await tg.send(teacher, "Kiểm tra\x00 cổng\u202e " + unicodedata.normalize("NFD", "trường"))
    assert "Kiểm tra cổng trường" in summary[-1].text
    replies = await tg.tap(teacher, "c:send")
    assert not any("Xin lỗi" in m.text for m in replies)
    req = tg.seed(lambda s: s.exec(select(FootageRequest)).one())
    assert req.purpose_text == "Kiểm tra cổng trường"
    card = await tg.wait_for_message(principal, contains="Kiểm tra cổng trường")
    assert any(p.startswith("ap:") for p in payloads(card))
    for chat in (teacher, principal):
        assert not [t for t in tg.texts(chat) if FORBIDDEN.search(t)]
    # "/camera" with a NUL glued on is still the command: the same answer as a clean "/camera"
    glued = await tg.send(teacher, "/camera\x00")
    await tg.command(teacher, "huy")
    plain = await tg.command(teacher, "camera")
    assert glued and [m.text for m in glued] == [m.text for m in plain]


# -- the web chat: its own command and payload parsing sees clean text --------------------------------
@pytest.mark.parametrize("runtime_options", [{"workflows": ("profile",)}])
async def test_web_chat_text_and_payload_are_cleaned(runtime: Any) -> None:
    """A JSON body can carry a NUL and a lone surrogate (``"\\ud800"``): the command is still read,
    the payload still measured and matched, the unit stored clean, the echo shown clean."""
    import aiohttp

    from bot.demo import DEMO_SCHOOL_NAME, create_demo_school
    from storage.models import School

    runtime.db.run_sync(lambda s: create_demo_school(s))
    await runtime.start()

    def teacher_id(s: Any) -> int:
        school = s.exec(select(School).where(School.name == DEMO_SCHOOL_NAME)).one()
        return next(p.id for p in s.exec(select(Person).where(Person.school_id == school.id)) if "teacher" in p.roles)
    teacher = runtime.db.run_sync(teacher_id)
    base = f"http://127.0.0.1:{runtime.web_port}"
    origin = {"Origin": base}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        r = await http.post(base + "/web/api/open", json={"person_id": teacher, "event_id": "open-0001"},
                            headers=origin)
        rev = (await r.json())["rev"]
        changes: list[dict[str, Any]] = []
        for n, event in enumerate([{"text": "/hoso\x00"}, {"payload": "c:unit\ud800", "label": "Sửa\u202e tổ"},
                                   {"text": "Tổ\x00 2\u202e"}]):
            body = {"person_id": teacher, "event_id": f"evt-clean-{n:04}", "since": rev, **event}
            r = await http.post(base + "/web/api/send", json=body, headers=origin)
            assert r.status == 200, await r.text()
            answer = await r.json()
            rev = answer["rev"]
            changes += answer["changes"]
    mine = [c["text"] for c in changes if c["from"] == "me"]
    assert mine == ["/hoso", "Sửa tổ", "Tổ 2"]
    bot = [c["text"] for c in changes if c["from"] == "bot"]
    assert "Tổ 2" in bot[-1] and not [t for t in bot if FORBIDDEN.search(t)]
    assert runtime.db.run_sync(lambda s: s.get(Person, teacher).unit) == "Tổ 2"
