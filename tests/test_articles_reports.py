"""Quotas, the monthly report, deadlines and the best-article vote (seed 001 Điều 18, 21, 22):
the XLSX opened with openpyxl and its totals worked out here, the monthly nudge reaching exactly the
people without a published article, the deadline reminders, and the vote (one vote per member,
changeable until the close, ties) — the reminders through the reminder engine's rules, ticked with
the test's clock, and the taps through the real python-telegram-bot."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from PIL import Image
from sqlmodel import Session, select

from bot.flows.articles.models import Article, ArticleBallot, ArticleStatus, ArticleVoteRound, VoteStatus
from bot.flows.articles.report import MONEY, build_chart, build_xlsx
from bot.flows.articles.service import check_url, month_stats, parse_month
from bot.i18n import Translator
from storage.models import Notice, NoticeStatus, RuleSetting, School
from tests.fakes.tg_harness import TgHarness, payloads
from tests.test_articles_flow import T2, UIDS, A, B, H, M, P, S, T, seed_school

HN = ZoneInfo("Asia/Ho_Chi_Minh")


def local(y: int, mo: int, d: int, h: int = 9, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=HN).astimezone(UTC)


def add_article(s: Session, ids: dict[str, int], author: str, title: str, *, status: str = ArticleStatus.PUBLISHED,
                published: datetime | None = None, unit: str = "", event: date | None = None,
                late: bool = False) -> int:
    art = Article(school_id=ids["school"], author_id=ids[author], title=title, category="short", unit=unit,
                  origin="own", body=f"{title}.", event_date=event,
                  deadline=event + timedelta(days=3) if event else None, status=status, version=1,
                  progress=["title", "category", "unit", "origin", "event", "body", "photos"],
                  published_at=published, late=late,
                  published_url=f"https://thuongthanh.edu.vn/tin-tuc/{abs(hash(title)) % 10**8}.html"
                  if status == ArticleStatus.PUBLISHED else "")
    s.add(art)
    s.flush()
    return int(art.id or 0)


def switch_off(s: Session, school_id: int, *rules: str) -> None:
    """A school may switch rules off in the calendar; the vote tests do not need the monthly report."""
    for rule in rules:
        s.add(RuleSetting(school_id=school_id, rule=rule, enabled=False, params={}))


def notices(h: TgHarness, rule: str) -> list[Notice]:
    return h.seed(lambda s: list(s.exec(select(Notice).where(Notice.rule == rule, Notice.person_id.is_not(None)))))  # type: ignore[union-attr]


@pytest.fixture
def runtime_options() -> dict[str, object]:
    """The real handlers and the article workflow only: other areas' reminders (sent at the same ticks)
    cannot blur what these tests count."""
    return {"workflows": ("articles",)}


@pytest.fixture
def h(telegram):
    harness = telegram
    ids = harness.seed(seed_school)
    for key, uid in UIDS.items():
        harness.link(ids[key], uid)
    harness.ids = ids  # type: ignore[attr-defined]
    return harness


# -- the workbook ---------------------------------------------------------------------------------------
def test_xlsx_holds_counts_payment_and_totals(db, tmp_path):
    def seed(s: Session) -> dict[str, int]:
        ids = seed_school(s, {"rate": 50000})
        add_article(s, ids, "teacher", "Lễ chào cờ", published=local(2026, 10, 5), unit="Tổ 1",
                    event=date(2026, 10, 4))
        add_article(s, ids, "teacher", "Hội thi kể chuyện", published=local(2026, 10, 20), unit="Tổ 1",
                    event=date(2026, 10, 12), late=True)
        add_article(s, ids, "teacher2", "Công đoàn thăm hỏi", published=local(2026, 10, 31, 23, 30),
                    unit="Công đoàn")
        add_article(s, ids, "dept_head", "Chuyên đề Toán", published=local(2026, 10, 1, 0, 5))
        add_article(s, ids, "left", "Bài của người đã chuyển", published=local(2026, 10, 9))
        # not October: the first minutes of November in Hà Nội, last September, not published
        add_article(s, ids, "teacher2", "Đầu tháng 11", published=local(2026, 11, 1, 0, 30))
        add_article(s, ids, "teacher2", "Tháng 9", published=local(2026, 9, 30, 23, 59))
        add_article(s, ids, "secretary", "Đang duyệt", status=ArticleStatus.IN_REVIEW)
        return ids

    ids = db.run_sync(seed)
    tr = Translator("vi", HN)
    now = datetime(2026, 11, 1, 1, 0, tzinfo=UTC)

    def build(s: Session) -> tuple[str, object]:
        school = s.get(School, ids["school"])
        st = month_stats(s, school, 2026, 10, HN)
        path = build_xlsx(st, school, tr, tmp_path / "r.xlsx", now)
        build_chart(st, tr, tmp_path / "r.png")
        return str(path), st
    path, _ = db.run_sync(build)
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Tổng hợp", "Cá nhân", "Đơn vị", "Bài đã đăng", "Thanh toán"]

    summary = {r[0].value: r[1].value for r in wb["Tổng hợp"].iter_rows(min_row=5) if r[0].value}
    assert summary["Số bài đã đăng"] == 5
    assert summary["Bài đăng muộn (quá 3 ngày sau sự kiện)"] == 1
    assert summary["Mức bồi dưỡng mỗi bài"] == 50000
    assert summary["Tổng tiền bồi dưỡng"] == 5 * 50000
    assert summary["Số CB, GV, NV có ít nhất 1 bài được đăng"] == 3  # the one who left is not staff any more

    people = {r[1].value: (r[3].value, r[4].value) for r in wb["Cá nhân"].iter_rows(min_row=6)}
    assert people["Nguyễn Thị Vân"] == (2, "Đạt") and people["Trần Minh Khang"] == (1, "Đạt")
    assert people["Hoàng Thị Lan"] == (1, "Đạt") and people["Đỗ Thị Mai Anh"] == (0, "Chưa đạt")
    assert people["Ngô Văn Cũ"] == (1, "Đạt")

    units = {r[1].value: (r[2].value, r[3].value, r[4].value) for r in wb["Đơn vị"].iter_rows(min_row=6)}
    assert units["Tổ 1"] == (2, 4, "Đạt")  # two on its behalf; by members: Vân 2, Lan 1, Cũ 1
    assert units["Công đoàn"] == (1, 0, "Đạt") and units["Chi bộ"] == (0, 0, "Chưa đạt")
    assert units["Tổ 2"] == (0, 1, "Chưa đạt")

    listed = [[c for c in r] for r in wb["Bài đã đăng"].iter_rows(min_row=6)]
    assert [r[1].value for r in listed] == ["Chuyên đề Toán", "Lễ chào cờ", "Bài của người đã chuyển",
                                             "Hội thi kể chuyện", "Công đoàn thăm hỏi"]
    chao_co = listed[1]
    assert chao_co[5].value == datetime(2026, 10, 4) and chao_co[5].number_format == "dd/mm/yyyy"
    assert chao_co[7].value == datetime(2026, 10, 5) and chao_co[8].value == "Có"
    assert listed[3][8].value == "Muộn"
    assert chao_co[9].hyperlink is not None and chao_co[9].value.startswith("https://thuongthanh.edu.vn/")

    pay = [[c for c in r] for r in wb["Thanh toán"].iter_rows(min_row=6)]
    rows = {r[1].value: (r[3].value, r[4].value, r[5].value) for r in pay if isinstance(r[0].value, int)}
    assert rows == {"Nguyễn Thị Vân": (2, 50000, 100000), "Trần Minh Khang": (1, 50000, 50000),
                    "Hoàng Thị Lan": (1, 50000, 50000), "Ngô Văn Cũ": (1, 50000, 50000)}
    total = next(r for r in pay if r[0].value == "Tổng cộng")
    assert total[3].value == 5 and total[5].value == 250000 and total[5].number_format == MONEY
    assert "50.000\xa0₫" in wb["Thanh toán"]["A4"].value
    with Image.open(tmp_path / "r.png") as im:
        assert im.format == "PNG" and im.size[0] > 400


def test_links_and_months_as_people_type_them():
    assert check_url("thuongthanh.edu.vn/tin-tuc/a.html") == ("https://thuongthanh.edu.vn/tin-tuc/a.html", "")
    assert check_url("HTTPS://ThuongThanh.edu.vn/tin-tuc/a.html?id=3")[0] == \
        "https://thuongthanh.edu.vn/tin-tuc/a.html?id=3"
    assert check_url("https://thuongthanh.edu.vn")[1] == "home"
    assert check_url("đã đăng rồi")[1] == "invalid"
    assert check_url("ftp://thuongthanh.edu.vn/a")[1] == "invalid"
    assert check_url("https://localhost/a")[1] == "invalid"
    assert check_url("")[1] == "empty"
    assert check_url("https://facebook.com/post/1", ["thuongthanh.edu.vn"])[1] == "domain"
    assert check_url("https://www.thuongthanh.edu.vn/a", ["thuongthanh.edu.vn"])[1] == ""
    today = date(2026, 11, 23)
    assert parse_month("10/2026", today=today) == (2026, 10)
    assert parse_month("tháng 10-26", today=today) == (2026, 10)
    assert parse_month("2026-09", today=today) == (2026, 9)
    assert parse_month("12", today=date(2027, 1, 5)) == (2026, 12)
    assert parse_month("13/2026", today=today) is None and parse_month("mười", today=today) is None


# -- the monthly nudge (Điều 18) ----------------------------------------------------------------------
async def test_monthly_nudge_reaches_exactly_the_people_without_an_article(h, clock):
    ids = h.ids

    def seed(s: Session) -> None:
        add_article(s, ids, "teacher", "Bài tháng 11", published=local(2026, 11, 5))
        add_article(s, ids, "teacher2", "Bài tháng 10", published=local(2026, 10, 28))
        add_article(s, ids, "dept_head", "Bài đang chờ", status=ArticleStatus.SUBMITTED)
        add_article(s, ids, "left", "Người đã nghỉ", published=local(2026, 10, 2))
    h.seed(seed)
    clock.t = local(2026, 11, 19, 8, 30)
    await h.tick()
    assert notices(h, "articles.quota_nudge") == []
    clock.t = local(2026, 11, 20, 8, 30)
    await h.tick()
    await h.tick()  # a second tick (or a restart) sends nothing twice
    sent = notices(h, "articles.quota_nudge")
    nudged = {n.person_id for n in sent if n.period == "2026-11"}
    expected = {ids[k] for k in ("teacher2", "secretary", "head", "member", "principal", "accountant", "dept_head",
                                 "guard")}
    assert nudged == expected
    assert {n.person_id for n in sent if n.status == NoticeStatus.HELD} == {ids["guard"]}  # never linked
    assert not any("Nhắc việc (Điều 18)" in t for t in h.texts(T))
    msg = await h.wait_for_message(T2, contains="Nhắc việc (Điều 18)")
    assert "tháng 11/2026" in msg.text and "/baiviet" in msg.text
    lan = await h.wait_for_message(H, contains="Nhắc việc (Điều 18)")
    assert "Bài đang chờ" in lan.text  # her article is on its way
    # the unit head gets her unit's status
    unit = [n for n in sent if n.period.startswith("2026-11:unit:")]
    assert [(n.person_id, n.period) for n in unit] == [(ids["dept_head"], "2026-11:unit:to 1")]
    status = await h.wait_for_message(H, contains="Tổ 1, tháng 11/2026")
    assert "Đơn vị chưa có bài" in status.text and "Thành viên đã có bài được đăng: 1/2" in status.text
    assert "Hoàng Thị Lan" in status.text and "Ngô Văn Cũ" not in status.text


# -- the monthly report (on the 1st) ---------------------------------------------------------------------
async def test_monthly_report_goes_to_secretary_head_and_accountant_once(h, clock):
    ids = h.ids
    h.seed(lambda s: [add_article(s, ids, "teacher", "Bài A", published=local(2026, 11, 3), unit="Tổ 1"),
                      add_article(s, ids, "teacher", "Bài B", published=local(2026, 11, 10)),
                      add_article(s, ids, "member", "Bài C", published=local(2026, 11, 12), unit="Công đoàn")])
    clock.t = local(2026, 12, 1, 8, 30)
    await h.tick()
    await h.tick()
    for uid in (S, B, A):
        docs = [m for m in h.messages(uid) if m.media_kind == "document"]
        charts = [m for m in h.messages(uid) if m.media_kind == "photo"]
        assert len(docs) == 1 and len(charts) == 1, uid
        assert "tháng 11/2026" in docs[0].text and "90.000\xa0₫" in docs[0].text
    for uid in (T, M, P):
        assert not any(m.media_kind for m in h.messages(uid))
    wb = openpyxl.load_workbook(io.BytesIO([m for m in h.messages(A) if m.media_kind == "document"][0].file.data))
    pay = [[c.value for c in r] for r in wb["Thanh toán"].iter_rows(min_row=6)]
    assert next(r for r in pay if r[1] == "Nguyễn Thị Vân")[3:6] == [2, 30000, 60000]
    assert next(r for r in pay if r[0] == "Tổng cộng")[5] == 90000


async def test_report_on_demand_and_overview(h):
    ids = h.ids
    h.seed(lambda s: [add_article(s, ids, "teacher", "Bài tháng 10", published=local(2026, 10, 3), unit="Đội")])
    replies = await h.command(A, "baocao_baiviet", "tháng 10/2026")
    assert sum(1 for m in replies if m.media_kind) == 2 and "30.000\xa0₫" in replies[0].text
    assert "chưa đọc được tháng" in (await h.command(A, "baocao_baiviet", "10/20266"))[-1].text
    assert "chưa bắt đầu" in (await h.command(A, "baocao_baiviet", "12/2026"))[-1].text
    replies = await h.command(S, "thongke", "10/2026")
    overview = replies[-1].text
    assert "Toàn trường, tháng 10/2026" in overview and "Đội: 1 bài của đơn vị" in overview
    assert "Chưa có bài được đăng (8 người)" in overview
    replies = await h.command(T2, "thongke", "10/2026")
    assert len(replies) == 1 and "Chưa có bài nào được đăng" in replies[0].text
    replies = await h.command(H, "thongke", "10/2026")  # the head of Tổ 1 sees her unit
    assert "Tổ 1, tháng 10/2026" in replies[-1].text


# -- deadlines (Điều 22.1.1) ----------------------------------------------------------------------------
async def test_deadline_reminders_before_and_after(h, clock):
    ids = h.ids
    arts = h.seed(lambda s: {
        "due": add_article(s, ids, "teacher", "Hội thi vẽ tranh", status=ArticleStatus.SUBMITTED,
                           event=date(2026, 11, 21)),
        "draft": add_article(s, ids, "teacher2", "Ngày hội đọc sách", status=ArticleStatus.DRAFT,
                             event=date(2026, 11, 22)),
        "over": add_article(s, ids, "teacher2", "Tọa đàm 20/11", status=ArticleStatus.APPROVED,
                            event=date(2026, 11, 19)),
        "done": add_article(s, ids, "teacher", "Đã đăng", published=local(2026, 11, 22), event=date(2026, 11, 21)),
    })
    await h.tick()  # Monday 23/11 09:00
    await h.tick()
    keys = sorted((n.person_id, n.period) for n in notices(h, "articles.deadline"))
    assert keys == sorted([(ids["teacher"], f"article:{arts['due']}:due"),
                           (ids["secretary"], f"article:{arts['due']}:due"),
                           (ids["teacher2"], f"article:{arts['over']}:late"),
                           (ids["secretary"], f"article:{arts['over']}:late")])
    msg = await h.wait_for_message(T, contains="Hội thi vẽ tranh")
    assert "24/11/2026" in msg.text and "⏰" in msg.text
    sec = await h.wait_for_message(S, contains="Tọa đàm 20/11")
    assert "quá hạn" in sec.text and f"ar:{arts['over']}:full" in payloads(sec)
    clock.t = local(2026, 11, 24, 9)
    await h.tick()
    draft = await h.wait_for_message(T2, contains="Ngày hội đọc sách")
    assert "chưa được gửi" in draft.text and "/baiviet" in draft.text
    assert not [n for n in notices(h, "articles.deadline") if n.person_id == ids["secretary"]
                and str(arts["draft"]) in n.period]  # a draft is the author's business only
    clock.t = local(2026, 11, 25, 9)
    await h.tick()
    late = await h.wait_for_message(T, contains="đã quá hạn đăng")
    assert "Hội thi vẽ tranh" in late.text
    assert len(notices(h, "articles.deadline")) == 7


# -- the best-article vote (Điều 21) ------------------------------------------------------------------------
async def test_vote_one_per_member_changeable_tie_broken_by_the_head(h, clock):
    ids = h.ids
    h.seed(lambda s: switch_off(s, ids["school"], "articles.monthly_report", "articles.deadline"))
    arts = h.seed(lambda s: {
        "a": add_article(s, ids, "teacher", "Lễ chào cờ tháng 10", published=local(2026, 10, 5)),
        "b": add_article(s, ids, "teacher2", "Hội diễn văn nghệ", published=local(2026, 10, 15)),
        "c": add_article(s, ids, "member", "Bài của ủy viên", published=local(2026, 10, 20)),
    })
    clock.t = local(2026, 11, 2, 9, 30)  # 1/11/2026 is a Sunday: the vote opens on Monday
    await h.tick()
    rnd = h.seed(lambda s: s.exec(select(ArticleVoteRound)).one())
    assert rnd.month == "2026-10" and rnd.candidates == [arts["a"], arts["b"], arts["c"]]
    assert rnd.closes_at == local(2026, 11, 9, 17)
    assert {n.person_id for n in notices(h, "articles.vote_open")} == {ids["head"], ids["member"], ids["secretary"]}
    ballot = await h.wait_for_message(M, contains="Bình chọn bài viết hay nhất tháng 10/2026")
    assert f"av:{rnd.id}:{arts['c']}" not in payloads(ballot)  # not one's own article
    assert f"av:{rnd.id}:{arts['a']}" in payloads(ballot)

    replies = await h.tap(M, f"av:{rnd.id}:{arts['c']}")  # forged: her own article
    assert "bài của chính mình" in replies[-1].text
    replies = await h.tap(M, f"av:{rnd.id}:{arts['a']}")
    assert "đã ghi nhận bình chọn «Lễ chào cờ tháng 10»" in replies[-1].text
    replies = await h.tap(M, f"av:{rnd.id}:{arts['a']}")
    assert "Anh/chị đã bình chọn" in replies[-1].text
    replies = await h.tap(M, f"av:{rnd.id}:{arts['b']}")
    assert "Đã đổi lựa chọn" in replies[-1].text and "☑️ " in replies[-1].text
    await h.tap(S, f"av:{rnd.id}:{arts['a']}")
    await h.command(T, "menu")
    replies = await h.tap(T, f"av:{rnd.id}:{arts['a']}")  # not on the board
    assert "Chỉ thành viên ban biên tập" in replies[-1].text
    ballots = h.seed(lambda s: sorted((b.voter_id, b.article_id) for b in s.exec(select(ArticleBallot))))
    assert ballots == sorted([(ids["member"], arts["b"]), (ids["secretary"], arts["a"])])
    replies = await h.command(M, "binhchon")
    assert "Anh/chị đang chọn: «Hội diễn văn nghệ»" in replies[-1].text

    clock.t = local(2026, 11, 9, 17, 0)
    await h.tick()
    rnd = h.seed(lambda s: s.get(ArticleVoteRound, rnd.id))
    assert rnd.status == VoteStatus.TIE and rnd.winners == [arts["a"], arts["b"]]
    replies = await h.tap(M, f"av:{rnd.id}:{arts['a']}")
    assert "đã kết thúc" in replies[-1].text
    card = await h.wait_for_message(B, contains="bằng phiếu")
    assert payloads(card) == [f"av:{rnd.id}:tb{arts['a']}", f"av:{rnd.id}:tb{arts['b']}"]
    assert not any("Bài viết hay nhất" in t for t in h.texts(T))  # nothing announced during the tie
    replies = await h.tap(M, f"av:{rnd.id}:tb{arts['a']}")
    assert "Chỉ Trưởng ban" in replies[-1].text
    await h.tap(B, f"av:{rnd.id}:tb{arts['b']}")
    replies = await h.tap(B, f"av:{rnd.id}:tb{arts['a']}")
    assert "đã được quyết định" in replies[-1].text
    clock.advance(minutes=1)
    await h.tick()
    await h.tick()
    result = [n for n in notices(h, "articles.vote") if n.period == f"vote:{rnd.id}:result"]
    assert len(result) == 9  # every active staff member once (the guard's is held until he links)
    msg = await h.wait_for_message(T, contains="Bài viết hay nhất tháng 10/2026")
    assert "«Hội diễn văn nghệ» của Trần Minh Khang (1 phiếu)" in msg.text
    assert h.seed(lambda s: s.get(ArticleVoteRound, rnd.id).status) == VoteStatus.ANNOUNCED


async def test_vote_tie_not_broken_is_shared_and_single_winner_announced(h, clock):
    ids = h.ids

    def seed(s: Session) -> dict[str, int]:
        switch_off(s, ids["school"], "articles.monthly_report", "articles.deadline", "articles.quota_nudge")
        a = add_article(s, ids, "teacher", "Bài một", published=local(2026, 9, 5))
        b = add_article(s, ids, "teacher2", "Bài hai", published=local(2026, 9, 6))
        c = add_article(s, ids, "dept_head", "Bài ba", published=local(2026, 10, 6))
        tie = ArticleVoteRound(school_id=ids["school"], month="2026-09", candidates=[a, b],
                               opened_at=local(2026, 10, 1), closes_at=local(2026, 10, 8, 17))
        one = ArticleVoteRound(school_id=ids["school"], month="2026-10", candidates=[c],
                               opened_at=local(2026, 11, 2), closes_at=local(2026, 11, 9, 17))
        s.add(tie)
        s.add(one)
        s.flush()
        s.add(ArticleBallot(round_id=tie.id, school_id=ids["school"], voter_id=ids["head"], article_id=a))
        s.add(ArticleBallot(round_id=tie.id, school_id=ids["school"], voter_id=ids["member"], article_id=b))
        s.add(ArticleBallot(round_id=one.id, school_id=ids["school"], voter_id=ids["head"], article_id=c))
        return {"tie": int(tie.id or 0), "one": int(one.id or 0)}
    rounds = h.seed(seed)
    clock.t = local(2026, 10, 8, 17, 1)
    await h.tick()
    assert h.seed(lambda s: s.get(ArticleVoteRound, rounds["tie"]).status) == VoteStatus.TIE
    clock.t = local(2026, 10, 11, 17, 2)  # three days without a decision: they share the title
    await h.tick()
    shared = await h.wait_for_message(T2, contains="đồng hạng")
    assert "Bài một" in shared.text and "Bài hai" in shared.text
    clock.t = local(2026, 11, 9, 17, 1)
    await h.tick()
    single = await h.wait_for_message(T, contains="tháng 10/2026")
    assert "«Bài ba» của Hoàng Thị Lan (1 phiếu)" in single.text


def test_demo_seed_is_idempotent(db):
    from bot.demo import create_demo_school
    from bot.flows.articles.service import demo_seed

    def go(s: Session) -> list[Article]:
        create_demo_school(s)
        school = s.exec(select(School)).one()
        demo_seed(s, school)
        demo_seed(s, school)
        return list(s.exec(select(Article)))
    arts = db.run_sync(go)
    assert len(arts) == 4
    assert sum(1 for a in arts if a.status == ArticleStatus.PUBLISHED) == 3
    assert all(a.published_url.startswith("https://") for a in arts if a.status == ArticleStatus.PUBLISHED)
