"""The article pipeline's logic that is not a conversation: categories, the school's settings,
who approves, checks of what people send (photos, links, months), the month's statistics and
quotas (seed 001 Điều 18), timeliness (Điều 22.1.1) and payment (Điều 21).

The conversations live in ``bot/flows/articles*.py``; the XLSX sheet and the chart in
``bot/flows/articles/report.py``.

School settings (``School.settings["articles"]``, every key optional) are declared in
:class:`bot.flows.articles.settings.ArticleSettings`: ``rate`` (payment per published article in đồng,
default 30 000; 0 = not funded), ``approver`` (``board_head``, ``principal`` or ``category``),
``category_approvers`` (``{category key: person id}``), ``portal_domains`` (host names a published
link must belong to), ``organisations`` (with a monthly quota besides the school's units) and
``unit_heads`` (``{unit name: [person ids]}``). ``python main.py settings show`` lists them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from bot.core import FileRef
from bot.engine.approvals import StageSpec
from bot.flows.articles.models import Article, ArticleStatus
from bot.flows.articles.settings import DEFAULT_RATE, ORGANISATIONS, ArticleSettings
from bot.i18n import N_, Translator
from bot.roles import BGH, Role
from bot.text import clean, fold, parse_id
from storage.models import Person, PersonStatus, School
from storage.people import people_with_role, school_units

AREA = ArticleSettings.section

#: Categories of Điều 14.2 / 15.1, in the regulation's order.
CATEGORIES: dict[str, str] = {
    "short": N_("Short news"),
    "conference": N_("Conference news, activity photos"),
    "reflection": N_("Reflection article"),
    "report": N_("Report, quick notes"),
    "feature": N_("Feature story, interview"),
    "indepth": N_("In-depth article on teaching or management"),
}
_CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "short": ("tin ngan", "ngan", "short"),
    "conference": ("tin hoi nghi", "hoi nghi", "anh hoat dong", "anh", "conference", "photos"),
    "reflection": ("bai phan anh", "phan anh", "reflection"),
    "report": ("tuong thuat", "ghi nhanh", "report"),
    "feature": ("phong su", "phong van", "feature", "interview"),
    "indepth": ("chuyen sau", "chuyen mon", "quan ly", "in-depth", "in depth"),
}

ORIGIN_OWN = "own"
ORIGIN_COLLECTED = "collected"

#: Publication is due this many days after the event (Điều 22.1.1).
DEADLINE_DAYS = 3

#: Who sees everyone's statistics and may ask for the monthly report.
OVERVIEW_ROLES = frozenset({Role.SECRETARY, Role.BOARD_HEAD, Role.BOARD_MEMBER, *BGH})
REPORT_ROLES = frozenset({*OVERVIEW_ROLES, Role.ACCOUNTANT})
#: Who receives the monthly report (Điều 14.6, 21).
REPORT_RECIPIENT_ROLES = (Role.SECRETARY, Role.BOARD_HEAD, Role.ACCOUNTANT)
#: Who votes for the month's best article (Điều 21: "ban biên tập").
VOTER_ROLES = (Role.BOARD_HEAD, Role.BOARD_MEMBER, Role.SECRETARY)
#: Who may read any article's full text.
READER_ROLES = frozenset({Role.SECRETARY, Role.BOARD_HEAD, Role.BOARD_MEMBER, *BGH})

MAX_TITLE = 300
MAX_BODY = 50_000
MAX_PHOTOS = 20
MAX_SOURCE = 500
MAX_NOTE = 1000
IMAGE_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})

#: Statuses in which an article is "on its way" (counted as pending in the statistics).
PIPELINE = (ArticleStatus.SUBMITTED, ArticleStatus.IN_REVIEW, ArticleStatus.APPROVED)
#: Statuses the author may still change and (re)submit.
EDITABLE = (ArticleStatus.DRAFT, ArticleStatus.RETURNED, ArticleStatus.REJECTED)

STATUS_TITLES: dict[str, str] = {
    ArticleStatus.DRAFT: N_("draft"),
    ArticleStatus.SUBMITTED: N_("with the secretary"),
    ArticleStatus.RETURNED: N_("returned for revision"),
    ArticleStatus.IN_REVIEW: N_("waiting for approval"),
    ArticleStatus.APPROVED: N_("approved, waiting to be published"),
    ArticleStatus.PUBLISHED: N_("published"),
    ArticleStatus.REJECTED: N_("not approved"),
    ArticleStatus.WITHDRAWN: N_("withdrawn"),
}


# -- settings -------------------------------------------------------------------------------------
def settings_of(school: School | None) -> dict[str, Any]:
    """The school's article settings as a dict (defaults where nothing usable is stored)."""
    return ArticleSettings.of(school).model_dump()


def rate_of(school: School | None) -> int:
    return ArticleSettings.of(school).rate


def organisations(school: School | None) -> list[str]:
    return list(ArticleSettings.of(school).organisations)


def units_of(session: Session, school: School) -> list[str]:
    """Organisations first, then the school's units (tổ), without duplicates (diacritics forgiven)."""
    out: list[str] = []
    seen: set[str] = set()
    for u in [*organisations(school), *school_units(session, school=school)]:
        k = fold(u)
        if u and k not in seen:
            seen.add(k)
            out.append(u)
    return out


def category_title(tr: Translator, key: str) -> str:
    return tr.t(CATEGORIES[key]) if key in CATEGORIES else key


def parse_category(raw: str | None) -> str | None:
    """A category from what was typed: ``tin ngắn``, ``phong su``, ``Hội nghị`` …"""
    s = fold(raw or "").strip(" .")
    if not s:
        return None
    for key, words in _CATEGORY_WORDS.items():
        if s == key or s in words:
            return key
    hits = [k for k, words in _CATEGORY_WORDS.items() if any(w in s for w in words if len(w) > 3)]
    return hits[0] if len(hits) == 1 else None


def status_title(tr: Translator, status: str) -> str:
    return tr.t(STATUS_TITLES.get(status, status))


# -- who decides ----------------------------------------------------------------------------------
def approver_stage(session: Session, school: School, article: Article, *, in_plan: bool) -> StageSpec:
    """The approver of Điều 12.2 / 15.2: the board head; the board member delegated for the category;
    or the principal where the school chooses. Outside the activity plan: always the board head."""
    if not in_plan:
        return StageSpec(role=Role.BOARD_HEAD)
    cfg = ArticleSettings.of(school)
    if cfg.approver == "principal":
        return StageSpec(role=Role.PRINCIPAL)
    if cfg.approver == "category":
        pid = parse_id(str(cfg.category_approvers.get(article.category, "")))
        person = session.get(Person, pid) if pid is not None else None
        if person is not None and person.is_active and person.school_id == school.id:
            return StageSpec(person_id=person.id)
    return StageSpec(role=Role.BOARD_HEAD)


def secretaries(session: Session, school_id: int) -> list[Person]:
    """The secretaries; if the school has none, the board head, then the principal."""
    for role in (Role.SECRETARY, Role.BOARD_HEAD, Role.PRINCIPAL):
        people = people_with_role(session, school_id=school_id, role=role)
        if people:
            return people
    return []


def is_secretary(session: Session, person: Person) -> bool:
    """The secretary's rights; where the school has no secretary, the one who stands in for them."""
    if person.has_role(Role.SECRETARY):
        return True
    return any(p.id == person.id for p in secretaries(session, person.school_id))


def unit_heads(session: Session, school: School) -> dict[str, list[Person]]:
    """Heads of each unit: tổ trưởng (``dept_head``) by their unit, plus ``unit_heads`` settings."""
    assert school.id is not None
    out: dict[str, list[Person]] = {}
    units = units_of(session, school)
    by_fold = {fold(u): u for u in units}
    for p in people_with_role(session, school_id=school.id, role=Role.DEPT_HEAD):
        u = by_fold.get(fold(p.unit))
        if u:
            out.setdefault(u, []).append(p)
    for name, ids in ArticleSettings.of(school).unit_heads.items():
        u = by_fold.get(fold(name))
        if u is None:
            continue
        for pid in ids:
            hid = parse_id(str(pid))
            head = session.get(Person, hid) if hid is not None else None
            if head is not None and head.is_active and head.school_id == school.id and all(
                    q.id != head.id for q in out.get(u, [])):
                out.setdefault(u, []).append(head)
    return out


# -- checks of what people send -----------------------------------------------------------------
def check_photo(f: FileRef) -> str | None:
    """None when the attachment is a picture we can use, else ``too_big`` / ``failed`` / ``not_image``."""
    if f.error:
        return "too_big" if f.error == "too_big" else "failed"
    if f.kind not in ("photo", "document") or not f.path:
        return "not_image"
    try:
        from PIL import Image

        with Image.open(f.path) as im:
            fmt = im.format or ""
            im.verify()
    except Exception:
        return "not_image"
    return None if fmt.upper() in IMAGE_FORMATS else "not_image"


_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")


def check_url(raw: str | None, domains: Iterable[str] = ()) -> tuple[str | None, str]:
    """Validate the link of a published article. Returns (normalised URL, "") or (None, reason) with
    reason ``empty`` / ``invalid`` / ``home`` (only the portal's home page) / ``domain``."""
    s = (raw or "").strip().strip("<>")
    if not s:
        return None, "empty"
    if any(c.isspace() for c in s) or len(s) > 500:
        return None, "invalid"
    if "://" not in s:
        s = "https://" + s
    try:
        parts = urlsplit(s)
        port = parts.port  # raises on a bad port
    except ValueError:
        return None, "invalid"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None, "invalid"
    try:
        host = parts.hostname.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None, "invalid"
    if not _HOST.match(host):
        return None, "invalid"
    if parts.path in ("", "/") and not parts.query:
        return None, "home"
    wanted = [fold(d).strip().lstrip(".").lower() for d in domains if str(d).strip()]
    if wanted and not any(host == d or host.endswith("." + d) for d in wanted):
        return None, "domain"
    netloc = host + (f":{port}" if port else "")
    return urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, parts.fragment)), ""


_MONTH = re.compile(r"^\s*(?:thang\s*)?(\d{1,2})\s*[/\-.]\s*(\d{4}|\d{2})\s*$", re.ASCII)
_MONTH_ISO = re.compile(r"^\s*(\d{4})\s*-\s*(\d{1,2})\s*$", re.ASCII)
_MONTH_ONLY = re.compile(r"^\s*(?:thang\s*)?(\d{1,2})\s*$", re.ASCII)


def parse_month(raw: str | None, *, today: date) -> tuple[int, int] | None:
    """``10/2026``, ``10-2026``, ``10/26``, ``tháng 10/2026``, ``2026-10``, ``tháng 10`` → (2026, 10)."""
    s = fold(raw or "")
    if not s:
        return None
    m = _MONTH_ISO.match(s)
    if m:
        y, mo = int(m.group(1)), int(m.group(2))
    elif (m := _MONTH.match(s)) is not None:
        mo, y = int(m.group(1)), int(m.group(2))
        y = y + 2000 if y < 100 else y
    elif (m := _MONTH_ONLY.match(s)) is not None:
        mo, y = int(m.group(1)), today.year
        if mo > today.month:  # "tháng 12" typed in January means last December
            y -= 1
    else:
        return None
    if not (1 <= mo <= 12 and 2000 <= y <= 2100):
        return None
    return y, mo


def previous_month(d: date) -> tuple[int, int]:
    return (d.year - 1, 12) if d.month == 1 else (d.year, d.month - 1)


def month_key(year: int, month: int) -> str:
    return f"{year}-{month:02d}"


def month_label(year: int, month: int) -> str:
    return f"{month:02d}/{year}"


def month_bounds(year: int, month: int, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of a local calendar month, in UTC."""
    start = datetime.combine(date(year, month, 1), time(0), tzinfo=tz)
    ny, nm = (year + 1, 1) if month == 12 else (year, month + 1)
    end = datetime.combine(date(ny, nm, 1), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


# -- timeliness -----------------------------------------------------------------------------------
def deadline_for(event: date | None) -> date | None:
    return event + timedelta(days=DEADLINE_DAYS) if event is not None else None


def is_late(article: Article, tz: ZoneInfo) -> bool:
    if article.deadline is None or article.published_at is None:
        return False
    return article.published_at.astimezone(tz).date() > article.deadline


# -- the month's statistics -----------------------------------------------------------------------
@dataclass
class MonthStats:
    """Published articles of one month and the counts derived from them (Điều 18, 21, 22)."""

    year: int
    month: int
    rate: int
    articles: list[Article]
    people: list[Person]                      # active staff, plus anyone who published that month
    units: list[str]
    authors: dict[int, Person] = field(default_factory=dict)
    per_person: dict[int, int] = field(default_factory=dict)
    per_unit: dict[str, int] = field(default_factory=dict)          # on behalf of the unit
    per_unit_members: dict[str, int] = field(default_factory=dict)  # by the unit's members

    @property
    def total(self) -> int:
        return len(self.articles)

    @property
    def late(self) -> int:
        return sum(1 for a in self.articles if a.late)

    @property
    def payment_total(self) -> int:
        return self.total * self.rate

    def payment(self, person_id: int) -> int:
        return self.per_person.get(person_id, 0) * self.rate

    def without_article(self) -> list[Person]:
        return [p for p in self.people if p.is_active and not self.per_person.get(p.id or 0)]

    def unit_members(self, unit: str) -> list[Person]:
        k = fold(unit)
        return [p for p in self.people if p.is_active and fold(p.unit) == k]


def month_stats(session: Session, school: School, year: int, month: int, tz: ZoneInfo) -> MonthStats:
    assert school.id is not None
    start, end = month_bounds(year, month, tz)
    articles = list(session.exec(select(Article).where(
        Article.school_id == school.id, Article.status == ArticleStatus.PUBLISHED,
        col(Article.published_at) >= start, col(Article.published_at) < end)
        .order_by(col(Article.published_at), col(Article.id))))
    people = list(session.exec(select(Person).where(Person.school_id == school.id,
                                                    Person.status == PersonStatus.ACTIVE).order_by(col(Person.id))))
    have = {p.id for p in people}
    authors: dict[int, Person] = {p.id: p for p in people if p.id is not None}
    for a in articles:
        if a.author_id not in have:
            p = session.get(Person, a.author_id)
            if p is not None:
                people.append(p)
                have.add(p.id)
                authors[a.author_id] = p
    people.sort(key=lambda p: name_key(p.full_name))
    units = units_of(session, school)
    by_fold = {fold(u): u for u in units}
    stats = MonthStats(year, month, rate_of(school), articles, people, units, authors)
    for a in articles:
        stats.per_person[a.author_id] = stats.per_person.get(a.author_id, 0) + 1
        if a.unit:
            u = by_fold.get(fold(a.unit))
            if u is None:
                u = a.unit
                units.append(u)
                by_fold[fold(u)] = u
            stats.per_unit[u] = stats.per_unit.get(u, 0) + 1
        author = authors.get(a.author_id)
        if author is not None and author.unit:
            mu = by_fold.get(fold(author.unit))
            if mu is not None:
                stats.per_unit_members[mu] = stats.per_unit_members.get(mu, 0) + 1
    return stats


def pending_of(session: Session, person: Person) -> list[Article]:
    return list(session.exec(select(Article).where(Article.author_id == person.id,
                                                   col(Article.status).in_(list(PIPELINE)))
                             .order_by(col(Article.id))))


def unfinished_of(session: Session, person: Person, limit: int = 6) -> list[Article]:
    """The person's drafts and the articles returned to them, newest first."""
    return list(session.exec(select(Article).where(Article.author_id == person.id,
                                                   col(Article.status).in_(list(EDITABLE)))
                             .order_by(col(Article.updated_at).desc(), col(Article.id).desc()).limit(limit)))


def name_key(full_name: str) -> tuple[str, str]:
    """Vietnamese list order: by given name (the last word), then the whole name, diacritics folded."""
    folded = fold(full_name)
    return (folded.rsplit(" ", 1)[-1], folded)


def short(text: str, n: int = 40) -> str:
    text = clean(text)
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


# -- demo data ------------------------------------------------------------------------------------
DEMO_SAMPLES: tuple[tuple[str, str, str, str, int, bool], ...] = (
    # (role of the author, category, on behalf of, title, days from today of the event, published)
    (Role.TEACHER, "short", "Tổ 1", "Lễ chào cờ đầu tuần chủ đề “Tri ân thầy cô”", -35, True),
    (Role.DEPT_HEAD, "report", "Công đoàn", "Công đoàn trường tổ chức hội thao chào mừng 20/11", -33, True),
    (Role.TEACHER, "conference", "", "Hội nghị cán bộ, viên chức năm học mới", -5, True),
    (Role.DEPT_HEAD, "indepth", "Tổ 1", "Kinh nghiệm dạy đọc hiểu cho học sinh lớp 1", -2, False),
)


def demo_seed(session: Session, school: School) -> None:
    """For ``python main.py demo``: a few published articles (last month and this month) and one waiting
    for the secretary. Idempotent: nothing is added when the sample titles already exist."""
    from bot.flows.articles.models import ArticleVersion

    assert school.id is not None
    titles = [t for _, _, _, t, _, _ in DEMO_SAMPLES]
    if session.exec(select(Article.id).where(Article.school_id == school.id,
                                             col(Article.title).in_(titles))).first() is not None:
        return
    people = list(session.exec(select(Person).where(Person.school_id == school.id,
                                                    Person.status == PersonStatus.ACTIVE).order_by(col(Person.id))))
    by_role = {r: p for p in reversed(people) for r in p.roles}
    sec = by_role.get(Role.SECRETARY)
    boss = by_role.get(Role.BOARD_HEAD)
    if sec is None or Role.TEACHER not in by_role:
        return
    now = datetime.now(UTC)
    for role, cat, unit, title, days, published in DEMO_SAMPLES:
        author = by_role.get(role) or by_role[Role.TEACHER]
        event = (now + timedelta(days=days)).date()
        art = Article(school_id=school.id, author_id=author.id or 0, title=title, category=cat, unit=unit,
                      origin=ORIGIN_OWN, event_date=event, deadline=deadline_for(event), version=1,
                      body=f"{title}. Nội dung mẫu để thử quy trình tin bài của cổng thông tin điện tử nhà trường.",
                      progress=["title", "category", "unit", "origin", "event", "body", "photos"],
                      status=ArticleStatus.SUBMITTED, created_at=now, updated_at=now, submitted_at=now)
        if published:
            art.status, art.published_by = ArticleStatus.PUBLISHED, sec.id
            art.published_at = datetime.combine(event + timedelta(days=1), time(3), tzinfo=UTC)
            art.approved_by = boss.id if boss else None
            art.published_url = f"https://demo-ngocthuy.edu.vn/tin-tuc/bai-mau-{abs(days)}.html"
        session.add(art)
        session.flush()
        session.add(ArticleVersion(article_id=art.id or 0, school_id=school.id, n=1, kind="submitted",
                                   editor_id=author.id, title=art.title, body=art.body, created_at=now))
    session.flush()


__all__ = [
    "AREA", "CATEGORIES", "DEFAULT_RATE", "demo_seed", "EDITABLE", "MonthStats", "ORGANISATIONS", "PIPELINE", "approver_stage",
    "category_title", "check_photo", "check_url", "deadline_for", "is_late", "is_secretary", "month_bounds",
    "month_key", "month_label", "month_stats", "name_key", "organisations", "parse_category", "parse_month",
    "pending_of", "previous_month", "rate_of", "secretaries", "settings_of", "short", "status_title",
    "unfinished_of", "unit_heads", "units_of",
]
