"""The article pipeline end to end through the real python-telegram-bot against the fake Bot API:
submit with photos → return with a note → revise → secretary's corrected text → forward → approve →
publish with a checked link → the author's count and the monthly report change; authorisation,
clear replies to bad input, drafts across a restart, and where the approval goes (seed 001 Điều 12–22)."""

from __future__ import annotations

import io
from datetime import date

import openpyxl
import pytest
from PIL import Image
from sqlmodel import Session, select

from bot.flows.articles.models import Article, ArticleStatus, ArticleVersion
from storage import audit
from storage.models import Approval, PersonStatus, School
from tests.fakes.tg_harness import TgHarness, payloads
from tests.helpers import make_person, make_school

# Telegram user ids of the seeded people.
T, T2, S, B, M, P, A, H = 2001, 2002, 2003, 2004, 2005, 2006, 2007, 2008
UIDS = {"teacher": T, "teacher2": T2, "secretary": S, "head": B, "member": M, "principal": P, "accountant": A,
        "dept_head": H}


def seed_school(s: Session, settings: dict | None = None) -> dict[str, int]:
    """A school like TH Thượng Thanh: the editorial board, teachers in two units, an accountant, a
    guard who never linked the assistant and a teacher who left."""
    school = make_school(s, "Trường Tiểu học Thượng Thanh", short_name="TH Thượng Thanh",
                         settings={"articles": settings or {}, "units": ["Tổ 1", "Tổ 2", "Tổ Văn phòng"]})
    ids = {
        "teacher": make_person(s, school, "Nguyễn Thị Vân", ["teacher"], unit="Tổ 1").id,
        "teacher2": make_person(s, school, "Trần Minh Khang", ["teacher"], unit="Tổ 2").id,
        "secretary": make_person(s, school, "Đỗ Thị Mai Anh", ["secretary", "teacher"], unit="Tổ 2").id,
        "head": make_person(s, school, "Lê Thị Hồng Nhung", ["board_head", "vice_principal"], unit="Tổ Văn phòng").id,
        "member": make_person(s, school, "Phạm Quốc Bảo", ["board_member", "teacher"], unit="Tổ 2").id,
        "principal": make_person(s, school, "Nguyễn Thị Thanh Hương", ["principal"], unit="Tổ Văn phòng").id,
        "accountant": make_person(s, school, "Phan Thị Ngọc Ánh", ["accountant"], unit="Tổ Văn phòng").id,
        "dept_head": make_person(s, school, "Hoàng Thị Lan", ["dept_head", "teacher"], unit="Tổ 1").id,
        "guard": make_person(s, school, "Vũ Văn Tuấn", ["guard"], unit="Tổ Văn phòng").id,
        "left": make_person(s, school, "Ngô Văn Cũ", ["teacher"], unit="Tổ 1", status=PersonStatus.LEFT).id,
        "school": school.id,
    }
    return {k: int(v or 0) for k, v in ids.items()}


def jpeg(color: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, "JPEG")
    return buf.getvalue()


def article(tg: TgHarness) -> Article:
    return tg.seed(lambda s: s.exec(select(Article).order_by(Article.id.desc())).first())  # type: ignore[union-attr]


@pytest.fixture
def tg(telegram):
    h = telegram
    ids = h.seed(seed_school)
    for key, uid in UIDS.items():
        h.link(ids[key], uid)
    h.ids = ids  # type: ignore[attr-defined]
    return h


def texts_after(tg: TgHarness, uid: int, n: int) -> str:
    return "\n".join(tg.texts(uid)[n:])


async def _submit(tg: TgHarness, uid: int = T, title: str = "Lễ khai giảng năm học mới",
                  event: str = "21/11") -> Article:
    """The author's whole submission, as a teacher would type it."""
    await tg.command(uid, "baiviet")
    await tg.send(uid, title)
    await tg.tap(uid, "c:cat:report")
    await tg.send(uid, "cong doan")  # the unit typed without diacritics
    await tg.tap(uid, "c:own")
    await tg.send(uid, event)
    await tg.send(uid, "Sáng 21/11, trường tổ chức lễ khai giảng.")
    await tg.send(uid, "Các em học sinh lớp 1 được đón bằng trống hội.")
    await tg.send(uid, "Xong")
    await tg.send_photo(uid, jpeg("red"))
    await tg.send_photo(uid, jpeg("blue"))
    await tg.tap(uid, "c:done")
    await tg.tap(uid, "c:send")
    return article(tg)


async def test_whole_pipeline_to_publication_count_and_report(tg):
    # -- submission, with the clear replies to bad input --------------------------------------------
    await tg.command(T, "baiviet")
    replies = await tg.send(T, "   ")
    assert "Tiêu đề không được để trống" in replies[-1].text
    await tg.send(T, "Lễ khai giảng năm học mới")
    card = await tg.last(T)
    assert "c:cat:report" in payloads(card)
    await tg.tap(T, "c:cat:report")
    await tg.send(T, "cong doan")
    await tg.tap(T, "c:collected")
    replies = await tg.send(T, "Báo Giáo dục và Thời đại")
    assert "21/11" in replies[-1].text  # the date prompt
    await tg.send(T, "21/11")
    await tg.send(T, "Sáng 21/11, trường tổ chức lễ khai giảng.")
    replies = await tg.send(T, "Các em học sinh lớp 1 được đón bằng trống hội.")
    assert "Đã nhận" in replies[-1].text
    await tg.send(T, "xong")
    replies = await tg.send_file(T, "document", b"%PDF-1.4 not a picture", file_name="bao-cao.pdf",
                                 mime_type="application/pdf")
    assert "“bao-cao.pdf” không phải là ảnh" in replies[-1].text
    await tg.send_photo(T, jpeg("red"))
    replies = await tg.send_photo(T, jpeg("blue"))
    assert "tổng cộng 2 ảnh" in replies[-1].text
    summary = (await tg.tap(T, "c:done"))[-1]
    assert "Lễ khai giảng năm học mới" in summary.text and "Công đoàn" in summary.text
    assert "Báo Giáo dục và Thời đại" in summary.text and "2 ảnh" in summary.text
    replies = await tg.tap(T, "c:send")
    assert "đã được gửi tới thư ký" in replies[-1].text and "24/11/2026" in replies[-1].text
    art = article(tg)
    assert art.status == ArticleStatus.SUBMITTED and art.version == 1 and len(art.photos) == 2
    assert art.unit == "Công đoàn" and art.source == "Báo Giáo dục và Thời đại"
    assert art.body == "Sáng 21/11, trường tổ chức lễ khai giảng.\n\nCác em học sinh lớp 1 được đón bằng trống hội."
    assert art.deadline == date(2026, 11, 24)

    # -- the secretary returns it with a note; the author revises and resends ---------------------------
    card = await tg.wait_for_message(S, contains=f"Tin bài #{art.id}")
    assert f"ar:{art.id}:fwd" in payloads(card) and f"ar:{art.id}:ret" in payloads(card)
    await tg.tap(S, f"ar:{art.id}:ret")
    await tg.send(S, "Bổ sung tên các lớp tham gia.")
    note = await tg.wait_for_message(T, contains="Bổ sung tên các lớp tham gia.")
    assert f"ar:{art.id}:rev" in payloads(note)
    assert article(tg).status == ArticleStatus.RETURNED
    summary = (await tg.tap(T, f"ar:{art.id}:rev"))[-1]
    assert "bị trả lại" in summary.text and "c:send" in payloads(summary)
    await tg.tap(T, "c:e:more")
    await tg.send(T, "Tham gia có các lớp 1A, 1B và 2C.")
    await tg.send(T, "Xong")
    replies = await tg.tap(T, "c:send")
    assert "đã được gửi tới thư ký" in replies[-1].text
    art = article(tg)
    assert art.status == ArticleStatus.SUBMITTED and art.version == 2 and art.body.endswith("1A, 1B và 2C.")
    await tg.wait_for_message(S, contains="đã được tác giả sửa và gửi lại")

    # -- the secretary sends a corrected text: a new version, the author is told --------------------------
    await tg.tap(S, f"ar:{art.id}:edit")
    await tg.send(S, "Sáng 21/11/2026, Trường Tiểu học Thượng Thanh long trọng tổ chức lễ khai giảng.")
    await tg.send(S, "Các lớp 1A, 1B và 2C tham gia đồng diễn.")
    await tg.send(S, "Xong")
    await tg.send(S, "Trường Tiểu học Thượng Thanh khai giảng năm học mới")
    await tg.wait_for_message(T, contains="đã biên tập tin bài")
    art = article(tg)
    assert art.version == 3 and art.title == "Trường Tiểu học Thượng Thanh khai giảng năm học mới"
    versions = tg.seed(lambda s: s.exec(select(ArticleVersion).where(ArticleVersion.article_id == art.id)
                                        .order_by(ArticleVersion.n)).all())
    assert [(v.n, v.kind) for v in versions] == [(1, "submitted"), (2, "resubmitted"), (3, "edited")]
    assert versions[0].body != versions[2].body  # the author's text is kept

    # -- nobody else may forward; the secretary forwards to the board head ---------------------------------
    replies = await tg.tap(T, f"ar:{art.id}:fwd")  # forged: no such button in the teacher's chat
    assert "Chỉ thư ký ban biên tập" in replies[-1].text and article(tg).status == ArticleStatus.SUBMITTED
    await tg.tap(S, f"ar:{art.id}:fwd")
    await tg.wait_for_message(T, contains="chuyển Trưởng ban biên tập duyệt")
    ap = tg.seed(lambda s: s.exec(select(Approval).where(Approval.kind == "article")).one())
    approval_card = await tg.wait_for_message(B, contains=f"#{ap.id}")
    assert f"ap:{ap.id}:ok" in payloads(approval_card) and "/xembai" in approval_card.text

    # -- an unauthorised person cannot approve --------------------------------------------------------
    await tg.command(M, "menu")
    for uid in (T, M, S):
        replies = await tg.tap(uid, f"ap:{ap.id}:ok")  # a forged callback on one of their own messages
        assert replies and tg.seed(lambda s: s.get(Approval, ap.id).status) == "pending"
    assert article(tg).status == ArticleStatus.IN_REVIEW
    await tg.tap(B, f"ap:{ap.id}:ok")
    assert article(tg).status == ArticleStatus.APPROVED
    await tg.wait_for_message(T, contains="đã được Lê Thị Hồng Nhung duyệt")
    publish_card = await tg.wait_for_message(S, contains="đã được duyệt. Anh/chị đăng bài")
    assert f"ar:{art.id}:pub" in payloads(publish_card)

    # -- an unauthorised person cannot publish; the link is checked -------------------------------------
    replies = await tg.tap(T, f"ar:{art.id}:pub")
    assert "Chỉ thư ký ban biên tập" in replies[-1].text
    replies = await tg.tap(B, f"ar:{art.id}:pub")
    assert "Chỉ thư ký ban biên tập" in replies[-1].text
    await tg.tap(S, f"ar:{art.id}:pub")
    replies = await tg.send(S, "đã đăng rồi nhé")
    assert "không phải là địa chỉ web hợp lệ" in replies[-1].text
    replies = await tg.send(S, "https://thuongthanh.edu.vn/")
    assert "trang chủ" in replies[-1].text
    assert article(tg).status == ArticleStatus.APPROVED
    replies = await tg.send(S, "thuongthanh.edu.vn/tin-tuc/khai-giang-2026.html")
    assert "https://thuongthanh.edu.vn/tin-tuc/khai-giang-2026.html" in replies[-1].text
    art = article(tg)
    assert art.status == ArticleStatus.PUBLISHED and not art.late
    assert art.published_url == "https://thuongthanh.edu.vn/tin-tuc/khai-giang-2026.html"
    await tg.wait_for_message(T, contains="đã được đăng trên cổng thông tin")
    actions = [e.action for e in tg.seed(lambda s: list(audit.events(s))) if e.action.startswith("article.")]
    assert actions.count("article.refused") == 3  # the teacher's forward and publish, the board head's publish
    assert [a for a in actions if a != "article.refused"] == ["article.draft", "article.submitted", "article.returned", "article.resubmitted",
                       "article.edited", "article.forwarded", "article.approved", "article.published"]

    # -- the author's count and the report changed ------------------------------------------------------
    replies = await tg.command(T, "thongke")
    assert "Đã có 1 bài được đăng" in replies[0].text and "30.000" in replies[0].text
    replies = await tg.command(S, "baocao_baiviet", "11/2026")
    doc = next(m for m in replies if m.media_kind == "document")
    chart = next(m for m in replies if m.media_kind == "photo")
    assert doc.file is not None and chart.file is not None and chart.file.data[:8] == b"\x89PNG\r\n\x1a\n"
    wb = openpyxl.load_workbook(io.BytesIO(doc.file.data))
    pay = wb["Thanh toán"]
    rows = [[c.value for c in r] for r in pay.iter_rows(min_row=6)]
    vân = next(r for r in rows if r[1] == "Nguyễn Thị Vân")
    assert vân[3:6] == [1, 30000, 30000]
    total = next(r for r in rows if r[0] == "Tổng cộng")
    assert total[3] == 1 and total[5] == 30000
    units = {r[1]: r[2] for r in ([c.value for c in r] for r in wb["Đơn vị"].iter_rows(min_row=6))}
    assert units["Công đoàn"] == 1 and units["Tổ 1"] == 0
    # a teacher may not ask for the payment sheet
    replies = await tg.command(T, "baocao_baiviet", "11/2026")
    assert not any(m.media_kind for m in replies)


async def test_unclear_input_gets_clear_replies(tg):
    await tg.command(T, "baiviet")
    assert "Tiêu đề không được để trống" in (await tg.send(T, " "))[-1].text
    await tg.send(T, "Hội thi vẽ tranh")
    assert "chọn thể loại" in (await tg.send(T, "không biết"))[-1].text
    await tg.send(T, "phóng sự")  # typed category
    await tg.tap(T, "c:u-")
    await tg.send(T, "sưu tầm trên mạng")  # typed instead of tapped (Zalo Bot has no buttons)
    await tg.send(T, "   ")
    assert "bắt buộc ghi nguồn" in tg.texts(T)[-1]
    await tg.send(T, "https://giaoducthoidai.vn/bai-viet")
    assert "chưa đọc được ngày" in (await tg.send(T, "hôm kìa nữa"))[-1].text
    await tg.send(T, "Không")
    assert "vẫn còn trống" in (await tg.send(T, "XONG"))[-1].text
    await tg.send(T, "Nội dung bài phóng sự.")
    await tg.send(T, "xong")
    replies = await tg.send_file(T, "document", b"\x00\x01binary", file_name="ghi-am.docx",
                                 mime_type="application/vnd.openxmlformats-officedocument.wordprocessingml.document")
    assert "không phải là ảnh" in replies[-1].text
    # a picture sent as a file is a picture
    replies = await tg.send_file(T, "document", jpeg("green"), file_name="anh.jpg", mime_type="image/jpeg")
    assert "1 ảnh" in replies[-1].text
    await tg.tap(T, "c:done")
    art = article(tg)
    assert art.category == "feature" and art.unit == "" and art.origin == "collected" and art.event_date is None
    assert art.deadline is None and len(art.photos) == 1


async def test_draft_survives_restart_and_is_resumed(tg):
    await tg.command(T, "baiviet")
    await tg.send(T, "Hội nghị viên chức")
    await tg.tap(T, "c:cat:conference")
    await tg.restart()
    await tg.send(T, "Tổ 1")  # the conversation went on where it was
    await tg.command(T, "huy")
    replies = await tg.command(T, "baiviet")  # the draft is offered
    art = article(tg)
    assert art.status == ArticleStatus.DRAFT and art.unit == "Tổ 1"
    assert f"c:r{art.id}" in payloads(replies[-1]) and "Hội nghị viên chức" in replies[-1].text
    replies = await tg.tap(T, f"c:r{art.id}")
    assert "c:own" in payloads(replies[-1])  # continues at the first missing answer
    await tg.tap(T, "c:own")
    await tg.send(T, "hôm nay")
    await tg.send(T, "Nội dung.")
    await tg.send(T, "xong")
    summary = (await tg.tap(T, "c:skip"))[-1]
    assert "c:later" in payloads(summary)
    await tg.tap(T, "c:later")
    await tg.restart()
    replies = await tg.command(T, "baiviet")
    await tg.tap(T, f"c:r{art.id}")
    summary = await tg.last(T)
    assert "c:send" in payloads(summary)
    await tg.tap(T, "c:send")
    assert article(tg).status == ArticleStatus.SUBMITTED


@pytest.mark.parametrize("mode", ["category", "principal"])
async def test_approver_follows_the_school_setting_and_outside_plan_goes_to_the_head(telegram, mode):
    h = telegram
    ids = h.seed(lambda s: seed_school(s))

    def configure(s: Session) -> None:
        school = s.get(School, ids["school"])
        school.settings = {**school.settings, "articles": {
            "approver": mode, "category_approvers": {"report": ids["member"]}}}
        s.add(school)
    h.seed(configure)
    for key, uid in UIDS.items():
        h.link(ids[key], uid)
    first = await _submit(h, title="Bài thứ nhất")
    await h.tap(S, f"ar:{first.id}:fwd")
    second = await _submit(h, title="Bài ngoài kế hoạch")
    await h.tap(S, f"ar:{second.id}:head")
    aps = h.seed(lambda s: s.exec(select(Approval).order_by(Approval.id)).all())
    approver = M if mode == "category" else P
    await h.wait_for_message(approver, contains=f"#{aps[0].id}")
    card = await h.wait_for_message(B, contains=f"#{aps[1].id}")
    assert "Ngoài kế hoạch" in card.text
    assert not any(f"#{aps[0].id}" in t for t in h.texts(B))
    # the mapped member (or the principal) decides; the board head cannot decide the first one
    await h.tap(B, f"ap:{aps[0].id}:ok")
    assert h.seed(lambda s: s.get(Approval, aps[0].id).status) == "pending"
    await h.tap(approver, f"ap:{aps[0].id}:ok")
    assert h.seed(lambda s: s.get(Article, first.id).status) == ArticleStatus.APPROVED
    # the board head rejects the second with a reason: the author may revise and resend
    await h.tap(B, f"ap:{aps[1].id}:no")
    await h.send(B, "Không thuộc kế hoạch năm học.")
    msg = await h.wait_for_message(T, contains="Không thuộc kế hoạch năm học.")
    assert f"ar:{second.id}:rev" in payloads(msg)
    assert h.seed(lambda s: s.get(Article, second.id).status) == ArticleStatus.REJECTED
    await h.rt.dispatcher.drain()


async def test_stale_cards_and_other_schools_change_nothing(tg):
    art = await _submit(tg)
    await tg.tap(S, f"ar:{art.id}:fwd")
    replies = await tg.tap(S, f"ar:{art.id}:fwd")  # second tap on the old card
    assert "không có gì thay đổi" in replies[-1].text
    assert len(tg.seed(lambda s: s.exec(select(Approval)).all())) == 1
    replies = await tg.tap(S, f"ar:{art.id}:pub")  # not approved yet
    assert "không có gì thay đổi" in replies[-1].text

    def other_school(s: Session) -> int:
        school = make_school(s, "Trường Tiểu học Khác", short_name="TH Khác")
        return int(make_person(s, school, "Thư ký khác", ["secretary"]).id or 0)
    other = tg.seed(other_school)
    tg.link(other, 3001)
    await tg.command(3001, "menu")
    replies = await tg.tap(3001, f"ar:{art.id}:ret")
    assert "không thể thực hiện" in replies[-1].text
    replies = await tg.command(3001, "xembai", str(art.id))
    assert "không thể thực hiện" in replies[-1].text
    # the author and the board may read it in full, photos included
    replies = await tg.command(B, "xembai", str(art.id))
    assert sum(1 for m in replies if m.media_kind == "photo") == 2
    assert any("Các em học sinh lớp 1" in m.text for m in replies)
    replies = await tg.command(T2, "xembai", str(art.id))
    assert "không thể thực hiện" in replies[-1].text
    # forged payloads with ids no database holds, or digits that are not ASCII
    for forged in ("ar:²:fwd", "ar:99999999999:pub", "ar:1:drop", "av:²:1", "av:1:tb٣", "av:99999999999:1"):
        replies = await tg.tap(S, forged)
        assert "Nút này không còn hiệu lực" in replies[-1].text, forged
    assert tg.seed(lambda s: s.get(Article, art.id).status) == ArticleStatus.IN_REVIEW


async def test_published_after_the_deadline_is_marked_late(tg):
    art = await _submit(tg, event="18/11")  # due 21/11; today is 23/11
    assert art.deadline == date(2026, 11, 21)
    await tg.tap(S, f"ar:{art.id}:fwd")
    ap = tg.seed(lambda s: s.exec(select(Approval)).one())
    await tg.tap(B, f"ap:{ap.id}:ok")
    await tg.tap(S, f"ar:{art.id}:pub")
    replies = await tg.send(S, "https://thuongthanh.edu.vn/tin-tuc/bai-muon.html")
    assert "đăng muộn" in replies[-1].text
    assert article(tg).late
    await tg.wait_for_message(T, contains="đăng muộn")


async def test_settings_by_principal_and_the_secretary_queue(tg):
    ids = tg.ids
    replies = await tg.command(T, "caidat_baiviet")
    assert "không dành cho vai trò của anh/chị" in replies[-1].text
    await tg.command(P, "caidat_baiviet")
    await tg.tap(P, "c:ap:category")
    await tg.tap(P, "c:map")
    await tg.tap(P, "c:k:report")
    replies = await tg.tap(P, f"c:p{ids['teacher']}")  # forged: a teacher is not on the board
    assert tg.seed(lambda s: s.get(School, ids["school"]).settings["articles"].get("category_approvers")) is None
    await tg.tap(P, f"c:p{ids['member']}")
    await tg.tap(P, "c:rate")
    assert "bằng chữ số" in (await tg.send(P, "ba mươi nghìn"))[-1].text
    await tg.send(P, "50.000 đ")
    await tg.tap(P, "c:domains")
    assert "không phải là địa chỉ web" in (await tg.send(P, "cổng trường"))[-1].text
    replies = await tg.send(P, "https://www.thuongthanh.edu.vn/")
    assert "thuongthanh.edu.vn" in replies[-1].text and "50.000" in replies[-1].text
    cfg = tg.seed(lambda s: s.get(School, ids["school"]).settings["articles"])
    assert cfg == {"approver": "category", "category_approvers": {"report": ids["member"]}, "rate": 50000,
                   "portal_domains": ["thuongthanh.edu.vn"]}
    await tg.tap(P, "c:done")

    # the queue of the secretary; the link must now be on the portal
    art = await _submit(tg)
    replies = await tg.command(S, "bientap")
    assert f"ar:{art.id}:fwd" in payloads(replies[-1])
    await tg.tap(S, f"ar:{art.id}:fwd", message_id=replies[-1].message_id)
    ap = tg.seed(lambda s: s.exec(select(Approval)).one())
    await tg.wait_for_message(M, contains=f"#{ap.id}")
    await tg.tap(M, f"ap:{ap.id}:ok")
    replies = await tg.command(S, "bientap")
    assert f"ar:{art.id}:pub" in payloads(replies[-1])
    await tg.tap(S, f"ar:{art.id}:pub", message_id=replies[-1].message_id)
    replies = await tg.send(S, "https://facebook.com/thuongthanh/posts/1")
    assert "phải thuộc cổng thông tin của trường (thuongthanh.edu.vn)" in replies[-1].text
    await tg.send(S, "https://thuongthanh.edu.vn/tin-tuc/a.html")
    assert "Không có tin bài nào đang chờ" in (await tg.command(S, "bientap"))[-1].text
    assert "50.000" in (await tg.command(T, "thongke"))[0].text
    replies = await tg.command(T, "bientap")
    assert "không dành cho vai trò của anh/chị" in replies[-1].text
