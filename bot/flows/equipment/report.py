"""``/baocao_thietbi`` — equipment reports per semester and school year (seed 003 Điều 8.1, 12.2),
and ``/saoluu`` — when the data were last backed up (Điều 12.1).

``/baocao_thietbi HK1 2026-2027`` (or ``HK2 …``, ``2026-2027`` for the whole year; without an
argument, buttons for the current school year): counts by condition, category and room, the changes
that happened in the period, how often each item was borrowed; an Excel file, archived under
``DATA_DIR/reports/<school>/thiet-bi/<năm học>/<kỳ>/``.

The quarterly rule ``equipment.backup`` reminds the IT team to back up (``python main.py backup
DEST``) with the date of the last backup; the principal sees that date in ``/saoluu``, in the
monthly equipment card and in every report."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bot.core import (
    Ctx,
    Flow,
    Handler,
    Inbound,
    OutFile,
    Reply,
    Step,
    choice,
    choice_value,
    keyboard,
)
from bot.engine.reminders import Quarterly, Rule, RuleRun
from bot.flows.equipment import service as eq
from bot.flows.equipment.xlsx import (
    Period,
    archive_report,
    parse_period,
    period_for,
    school_year_of,
    summary_text,
)
from bot.i18n import N_, Translator
from bot.roles import BGH, Role
from bot.text import parse_id
from storage.backup import last_backup

BACKUP_MAX_DAYS = 92  # Điều 12.1: at least every 3 months


def _make(ctx: Ctx, period: Period) -> Step:
    school, person = ctx.school, ctx.person
    assert school is not None and person is not None
    data, row = archive_report(ctx.session, school=school, period=period, tr=ctx.tr,
                               data_dir=ctx.settings.data_dir, now=ctx.now, person_id=person.id)
    ctx.audit("equipment.report", f"eqreport:{row.id}", period=period.key, sha256=row.sha256)
    items = {it.id or 0: it for it in data.items}
    text = summary_text(ctx.tr, data, items)
    name = f"bao-cao-thiet-bi_{period.part}_{period.year_label}.xlsx"
    return Step.done(Reply(text), Reply(ctx.t("📎 Report {period} (archived).", period=period.label(ctx.tr)),
                                        file=OutFile("document", row.path, name)))


def _choices(ctx: Ctx) -> Reply:
    settings = eq.area_settings(ctx.school)
    year = school_year_of(ctx.today(), settings)
    options = [period_for(y, part, settings) for y in (year, year - 1) for part in ("HK1", "HK2", "CN")]
    ctx.data["options"] = [p.key for p in options]
    return Reply(ctx.t("Which period? Tap one, or type it like HK1 2026-2027."), buttons=keyboard(
        *[choice(p.label(ctx.tr), f"p{i}") for i, p in enumerate(options)], per_row=3))


def start(ctx: Ctx) -> Step:
    """With an argument (``HK1 2026-2027``) make the report at once; else offer the periods."""
    args = (ctx.inbound.args or "").strip()
    if args:
        period = parse_period(args, today=ctx.today(), settings=eq.area_settings(ctx.school))
        if period is not None:
            return _make(ctx, period)
        return Step.goto("period", Reply(ctx.t("I could not read the period “{text}”.", text=args)), _choices(ctx))
    return Step.goto("period", _choices(ctx))


def period_(ctx: Ctx, msg: Inbound) -> Step:
    """A period button or typed period."""
    value = choice_value(msg) or ""
    options = ctx.data.get("options") or []
    settings = eq.area_settings(ctx.school)
    period: Period | None = None
    if value.startswith("p") and parse_id(value[1:]) is not None and int(value[1:]) < len(options):
        year_label, _, part = str(options[int(value[1:])]).partition("/")
        period = period_for(int(year_label[:4]), part, settings)
    elif msg.text:
        period = parse_period(msg.text, today=ctx.today(), settings=settings)
    if period is None:
        return Step.stay(Reply(ctx.t("Please tap a period, or type it like HK1 2026-2027 or 2026-2027.")))
    return _make(ctx, period)


# -- backups ----------------------------------------------------------------------------------------
def backup_status(tr: Translator, info: dict[str, Any] | None, now: datetime) -> str:
    """The last backup's date and whether the next one is due (Điều 12.1: at least every 3 months)."""
    if info is None:
        return tr.t("💾 No backup is recorded yet. Seed 003 Điều 12.1 asks for one at least every 3 months: IT runs "
                    "python main.py backup /path/to/usb-or-nas on the server.")
    at: datetime = info["at"]
    days = max(0, (now - at).days)
    lines = [tr.t("💾 Last backup: {date} ({n} days ago), {size}.", date=tr.datetime(at), n=tr.number(days),
                  size=tr.t("{n} MB", n=tr.number(round(int(info.get("bytes", 0)) / (1024 * 1024), 1))))]
    if days > BACKUP_MAX_DAYS:
        lines.append(tr.t("⚠️ That is more than 3 months ago (seed 003 Điều 12.1): ask IT to back up now."))
    else:
        lines.append(tr.t("Next one due by {date}.", date=tr.date(at + timedelta(days=BACKUP_MAX_DAYS))))
    return "\n".join(lines)


def show_backup(ctx: Ctx) -> Step:
    """``/saoluu``: the last backup's date for the principal and IT."""
    return Step.stay(Reply(backup_status(ctx.tr, last_backup(ctx.session), ctx.now)))


def backup_rule(run: RuleRun) -> None:
    """Every quarter (one notice per person and quarter): remind IT to back up, with the last date."""
    info = last_backup(run.session)
    for p in run.recipients():
        run.notify(p, lambda tr: Reply(tr.t("💾 Quarterly backup (seed 003 Điều 12.1): please copy the data to the "
                                            "backup storage now with python main.py backup /path/to/usb-or-nas.")
                                       + "\n" + backup_status(tr, info, run.now)))


#: commands and button namespaces that are not a conversation
HANDLERS: tuple[Handler, ...] = (
    Handler(show_backup, commands=("saoluu",), roles=frozenset({*BGH, Role.IT}),
                        description=N_("When the data were last backed up"), order=44),
)
#: conversations started from a button or another workflow (not from the menu)
FLOWS: tuple[Flow, ...] = ()


FLOW = Flow(
    name="equipment_report",
    command="baocao_thietbi",
    title=N_("Equipment report"),
    description=N_("Equipment report for a semester or school year (for example HK1 2026-2027)"),
    icon="📊",
    start=start,
    states={"period": period_},
    roles=frozenset(eq.REPORT_ROLES),
    order=43,
)

RULES = [
    Rule("equipment.backup", title=N_("Back up the data"), schedule=Quarterly(day=1, hour=8), fn=backup_rule,
         roles=(Role.IT,), regulation="003 Điều 12.1", order=42),
]
