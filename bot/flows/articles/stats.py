"""Quotas, statistics and the monthly report of the article pipeline (seed 001 Điều 14.6, 18, 21, 22).

* ``/thongke [10/2026]`` — a person's own month (published, on time or late, on the way); the
  secretary, the board and BGH also see every unit and every person; a unit head sees their unit.
* ``articles.quota_nudge`` (monthly, day 20 by default — a school changes it in the calendar):
  exactly the active staff with no article published this month get a nudge; unit heads get their
  unit's status (its own article, members still without one).
* ``articles.monthly_report`` (the 1st, for the previous month) and ``/baocao_baiviet 10/2026``:
  the XLSX workbook and the chart by unit (``bot/flows/articles/report.py``) to the secretary, the board
  head and the accountant; on demand to whoever asked.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from bot.core import Ctx, Flow, Handler, OutFile, Reply, Step
from bot.engine.reminders import Monthly, Rule, RuleRun
from bot.flows.articles.models import Article
from bot.flows.articles.service import (
    OVERVIEW_ROLES,
    REPORT_RECIPIENT_ROLES,
    REPORT_ROLES,
    MonthStats,
    is_secretary,
    month_label,
    month_stats,
    parse_month,
    pending_of,
    previous_month,
    status_title,
    unit_heads,
)
from bot.i18n import N_, Translator, escape
from bot.text import fold
from storage.models import Person, School

XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_NAMES = 60


def _month_arg(ctx: Ctx) -> tuple[int, int] | None | str:
    """(year, month) from the command's argument (this month when none); "bad" / "future" on errors."""
    today = ctx.today()
    arg = (ctx.inbound.args or "").strip()
    if not arg:
        return today.year, today.month
    ym = parse_month(arg, today=today)
    if ym is None:
        return "bad"
    if ym > (today.year, today.month):
        return "future"
    return ym


def _month_error(ctx: Ctx, err: str, command: str) -> Reply:
    if err == "future":
        return Reply(ctx.t("That month has not started yet."))
    return Reply(ctx.t("I could not read that month. Type it like /{command} 10/2026.", command=command))


def _names(people: list[Person]) -> str:
    shown = ", ".join(p.full_name + (f" ({p.unit})" if p.unit else "") for p in people[:MAX_NAMES])
    return shown + (f", … (+{len(people) - MAX_NAMES})" if len(people) > MAX_NAMES else "")


# -- /thongke -------------------------------------------------------------------------------------
def personal_view(ctx: Ctx, st: MonthStats, current: bool) -> Reply:
    person = ctx.person
    assert person is not None and person.id is not None
    tr = ctx.tr
    mine = [a for a in st.articles if a.author_id == person.id]
    lines = [tr.t("📊 <b>Your articles, {month}</b>", month=month_label(st.year, st.month))]
    if mine:
        lines.append(tr.tn("✅ {n} article published (quota: at least 1 a month, Article 18).",
                           "✅ {n} articles published (quota: at least 1 a month, Article 18).", len(mine)))
        for a in mine:
            line = tr.t("• «{title}» — {date} — {url}", title=a.title, date=tr.date(a.published_at or ctx.now),
                        url=a.published_url)
            if a.late:
                line += " " + tr.t("(late)")
            lines.append(line)
        if st.rate:
            lines.append(tr.t("Payment: {amount}.", amount=tr.money(st.payment(person.id))))
    else:
        lines.append(tr.t("⚠️ No article published yet (quota: at least 1 a month, Article 18)."))
    if current:
        pending = pending_of(ctx.session, person)
        for a in pending:
            lines.append(tr.t("⏳ «{title}» — {status}", title=a.title, status=status_title(tr, a.status)))
        if not mine and not pending:
            lines.append(tr.t("Type /baiviet to send one."))
    return Reply("\n".join(lines))


def unit_lines(tr: Translator, st: MonthStats, units: list[str]) -> list[str]:
    lines = []
    for u in units:
        n = st.per_unit.get(u, 0)
        members = st.per_unit_members.get(u, 0)
        icon = "✅" if n else "⚠️"
        lines.append(icon + " " + tr.t("{unit}: {n} on its behalf, {m} by its members", unit=u, n=n, m=members))
    return lines


def overview(ctx: Ctx, st: MonthStats, current: bool) -> Reply:
    tr = ctx.tr
    active = [p for p in st.people if p.is_active]
    met = [p for p in active if st.per_person.get(p.id or 0)]
    lines = [tr.t("🏫 <b>Whole school, {month}</b>", month=month_label(st.year, st.month))
             + (" " + tr.t("(so far)") if current else ""),
             tr.t("Published: {n} articles ({late} late). Staff who met the quota: {met}/{total}.",
                  n=st.total, late=st.late, met=len(met), total=len(active))]
    if st.rate:
        lines.append(tr.t("Payment: {n} × {rate} = {total}.", n=tr.number(st.total), rate=tr.money(st.rate),
                          total=tr.money(st.payment_total)))
    lines += ["", tr.t("<b>Organisations and units</b>"), *unit_lines(tr, st, st.units)]
    if met:
        lines += ["", tr.t("<b>Staff with published articles</b>")]
        for p in met:
            lines.append(tr.t("{name}: {n}", name=p.full_name + (f" ({p.unit})" if p.unit else ""),
                              n=st.per_person.get(p.id or 0, 0)))
    missing = st.without_article()
    if missing:
        lines += ["", tr.t("<b>Staff without a published article ({n})</b>", n=len(missing)), escape(_names(missing))]
    return Reply("\n".join(lines))


def unit_view(tr: Translator, st: MonthStats, unit: str) -> str:
    n = st.per_unit.get(unit, 0)
    members = st.unit_members(unit)
    missing = [p for p in members if not st.per_person.get(p.id or 0)]
    text = tr.t("📊 <b>{unit}, {month}</b>", unit=unit, month=month_label(st.year, st.month)) + "\n"
    text += (tr.t("✅ {n} article(s) published on the unit's behalf (quota: 1 a month).", n=n) if n else
             tr.t("⚠️ No article published on the unit's behalf yet (quota: 1 a month)."))
    if members:
        text += "\n" + tr.t("Members with a published article: {met}/{total}.", met=len(members) - len(missing),
                            total=len(members))
        if missing:
            text += "\n" + tr.t("Still without one: {names}", names=_names(missing))
    return text


def stats_cmd(ctx: Ctx) -> Step:
    """``/thongke [10/2026]``: one's month; everyone's for the secretary, the board and BGH."""
    person, school = ctx.person, ctx.school
    assert person is not None and school is not None
    ym = _month_arg(ctx)
    if isinstance(ym, str):
        return Step.stay(_month_error(ctx, ym, "thongke"))
    if ym is None:
        return Step.stay(_month_error(ctx, "bad", "thongke"))
    year, month = ym
    today = ctx.today()
    current = (year, month) == (today.year, today.month)
    st = month_stats(ctx.session, school, year, month, ctx.tr.tz)
    replies = [personal_view(ctx, st, current)]
    if person.has_role(*OVERVIEW_ROLES) or is_secretary(ctx.session, person):
        replies.append(overview(ctx, st, current))
    else:
        for unit, heads in unit_heads(ctx.session, school).items():
            if any(h.id == person.id for h in heads):
                replies.append(Reply(unit_view(ctx.tr, st, unit)))
    return Step.stay(*replies)


# -- /baocao_baiviet ------------------------------------------------------------------------------
def report_replies(ctx: Ctx | None, tr: Translator, st: MonthStats, school: School, data_dir: Any,
                   now: datetime) -> tuple[Reply, Reply, Reply]:
    from bot.flows.articles import (
        report as articles_report,  # openpyxl and matplotlib: loaded when a report is made, not at start-up
    )

    xlsx, png = articles_report.build(st, school, tr, data_dir, now)
    xlsx_name, png_name = articles_report.file_names(tr, st)
    summary = Reply(articles_report.summary_text(tr, st))
    doc = Reply(tr.t("📎 Article report and payment sheet, {month}.", month=month_label(st.year, st.month)),
                file=OutFile(kind="document", path=str(xlsx), file_name=xlsx_name, mime=XLSX_MIME))
    chart = Reply(tr.t("📈 Published articles by unit, {month}.", month=month_label(st.year, st.month)),
                  file=OutFile(kind="photo", path=str(png), file_name=png_name, mime="image/png"))
    return summary, doc, chart


def report_cmd(ctx: Ctx) -> Step:
    """``/baocao_baiviet [10/2026]``: the month's XLSX and chart, sent here (this month when none given)."""
    person, school = ctx.person, ctx.school
    assert person is not None and school is not None
    ym = _month_arg(ctx)
    if isinstance(ym, str) or ym is None:
        return Step.stay(_month_error(ctx, ym if isinstance(ym, str) else "bad", "baocao_baiviet"))
    st = month_stats(ctx.session, school, ym[0], ym[1], ctx.tr.tz)
    replies = report_replies(ctx, ctx.tr, st, school, ctx.settings.data_dir, ctx.now)
    ctx.audit("article.report", f"articles:{ym[0]}-{ym[1]:02d}", articles=st.total, payment=st.payment_total,
              on_demand=True)
    return Step.stay(*replies)


# -- the monthly nudge (Điều 18) ----------------------------------------------------------------------
def nudge_rule(run: RuleRun) -> None:
    """Everyone active without a published article this month; unit heads get their unit's status."""
    school = run.school
    today = run.today()
    st = month_stats(run.session, school, today.year, today.month, run.ctx.tr.tz)
    people = st.without_article()
    if run.params.get("roles") or run.params.get("people"):
        allowed = {p.id for p in run.recipients()}
        people = [p for p in people if p.id in allowed]
    label = month_label(today.year, today.month)
    for p in people:
        pending = pending_of(run.session, p)

        def make(tr: Translator, _pending: list[Article] = pending) -> Reply:
            text = tr.t("📝 Reminder (Article 18): you have no article published on the school portal yet in "
                        "{month}. Everyone needs at least one a month.", month=label)
            if _pending:
                text += "\n" + tr.t("Your article «{title}» is on its way ({status}).", title=_pending[0].title,
                                    status=status_title(tr, _pending[0].status))
            else:
                text += "\n" + tr.t("Type /baiviet to send one.")
            return Reply(text)
        run.notify(p, make)
    for unit, heads in unit_heads(run.session, school).items():
        for h in heads:
            run.notify(h, _unit_notice(st, unit), key=f"{run.period}:unit:{fold(unit)}")


def _unit_notice(st: MonthStats, unit: str) -> Callable[[Translator], Reply]:
    return lambda tr: Reply(unit_view(tr, st, unit))


# -- the monthly report (Điều 14.6, 21) ---------------------------------------------------------------
def report_rule(run: RuleRun) -> None:
    """On the 1st: last month's XLSX and chart to the secretary, the board head and the accountant."""
    people = run.recipients()
    keys = (f"{run.period}:xlsx", f"{run.period}:chart")
    todo = [p for p in people if not all(run.already(p, k) for k in keys)]
    if not todo:
        return
    if run.quiet_now():
        run.deferred = True
        return
    year, month = previous_month(run.today())
    st = month_stats(run.session, run.school, year, month, run.ctx.tr.tz)
    built: dict[str, tuple[Reply, Reply, Reply]] = {}

    def files(tr: Translator) -> tuple[Reply, Reply, Reply]:
        if tr.locale not in built:
            built[tr.locale] = report_replies(None, tr, st, run.school, run.ctx.settings.data_dir, run.now)
        return built[tr.locale]

    for p in todo:
        def doc(tr: Translator) -> Reply:
            summary, d, _ = files(tr)
            return Reply(summary.text + "\n\n" + d.text, file=d.file)
        run.notify(p, doc, key=keys[0])
        run.notify(p, lambda tr: files(tr)[2], key=keys[1])
    run.ctx.audit("article.report", f"articles:{year}-{month:02d}", articles=st.total, payment=st.payment_total,
                  to=[p.id for p in todo])


RULES = [
    Rule("articles.quota_nudge", title=N_("Monthly article quota not yet met"), schedule=Monthly(day=20, hour=8),
         fn=nudge_rule, roles=(), regulation="001 Điều 18", order=41),
    Rule("articles.monthly_report", title=N_("Monthly article statistics and payment sheet"),
         schedule=Monthly(day=1, hour=8), fn=report_rule, roles=tuple(REPORT_RECIPIENT_ROLES),
         regulation="001 Điều 14.6, 21", order=42),
]


#: commands and button namespaces that are not a conversation
HANDLERS: tuple[Handler, ...] = (
    Handler(stats_cmd, commands=("thongke",),
                        description=N_("Your published articles this month (and the school's, for the board)"),
                        order=21),
    Handler(report_cmd, commands=("baocao_baiviet",), roles=REPORT_ROLES,
                        description=N_("Monthly article report and payment sheet, e.g. /baocao_baiviet 10/2026"),
                        order=23),
)
#: conversations started from a button or another workflow (not from the menu)
FLOWS: tuple[Flow, ...] = ()


__all__ = ["RULES", "nudge_rule", "overview", "personal_view", "report_cmd",
           "report_rule", "stats_cmd"]
