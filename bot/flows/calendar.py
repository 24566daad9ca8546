"""``/lich`` — the compliance calendar: what is due for me and when; for the principal, the
school's calendar and its settings (``/lich cài đặt``: switch a rule on or off, change its day,
hour and recipients).

The rules themselves live with their workflows (``RULES`` in each flow module); the ones that
belong to no workflow are here: the school mailbox check four times a working day (001 Điều 8.1,
opt-in), the weekly malware scan by every staff member and the monthly process check by IT
(002 Điều 9.2–9.3).

```mermaid
stateDiagram-v2
    [*] --> view: /lich
    view --> pick: ⚙️ Cài đặt (principal)
    pick --> rule: a rule
    rule --> rule: Bật / Tắt
    rule --> rule: Chạy ngay (this period's occurrence now, once)
    rule --> day: Đổi ngày
    rule --> hour: Đổi giờ
    rule --> roles: Người nhận
    day --> rule
    hour --> rule
    roles --> rule
    rule --> pick: ↩
    pick --> [*]: Xong
```
"""

from __future__ import annotations

import re
from typing import Any

from bot.core import (
    Button,
    Ctx,
    Flow,
    Inbound,
    Reply,
    Step,
    Workflow,
    choice,
    choice_value,
    keyboard,
)
from bot.engine.reminders import (
    Continuous,
    DailyAt,
    EveryNDays,
    Monthly,
    Quarterly,
    Rule,
    RuleRun,
    Weekly,
    release_held,
    rule_params,
    run_rule_now,
    set_rule,
)
from bot.i18n import N_, Translator
from bot.roles import ROLE_TITLES, Role
from bot.text import fold, parse_id, parse_time
from bot.workdays import school_days_off

EVERYONE = "*"
SETTINGS_WORDS = ("cai dat", "caidat", "settings", "thiet lap")


# -- rules that belong to no workflow -------------------------------------------------------------
def _mailbox(run: RuleRun) -> None:
    def make(tr: Translator) -> Reply:
        return Reply(tr.t("📬 Time to check the school's official mailbox (Điều 8.1): read new mail and pass it "
                          "on to whoever must handle it."))
    for p in run.recipients():
        run.notify(p, make)


def _malware(run: RuleRun) -> None:
    def make(tr: Translator) -> Reply:
        return Reply(tr.t("🛡️ Weekly reminder (002 Điều 9.2): please run a full virus and malware scan on the "
                          "computers you use for school work, and tell IT about anything it finds (/suco)."))
    for p in run.recipients():
        run.notify(p, make)


def _processes(run: RuleRun) -> None:
    def make(tr: Translator) -> Reply:
        return Reply(tr.t("🔎 Monthly check (002 Điều 9.3): review the processes, start-up programs and accounts "
                          "on the school's servers and shared computers, and remove anything unknown."))
    for p in run.recipients():
        run.notify(p, make)


RULES = [
    Rule(key="mailbox_check", title=N_("School mailbox check"), schedule=DailyAt(hours=(8, 10, 14, 16)),
         fn=_mailbox, roles=(Role.PRINCIPAL,), regulation="001 Điều 8.1", enabled=False, order=60),
    Rule(key="malware_scan", title=N_("Weekly malware scan"), schedule=Weekly(weekday=0, hour=8), fn=_malware,
         roles=(EVERYONE,), regulation="002 Điều 9.2", order=70),
    Rule(key="process_check", title=N_("Monthly process check"), schedule=Monthly(day=1, hour=9),
         fn=_processes, roles=(Role.IT,), regulation="002 Điều 9.3", order=71),
]


# -- what is due for whom -------------------------------------------------------------------------
def _rules(ctx: Ctx) -> list[Rule]:
    return sorted(ctx.registry.rules.values(), key=lambda r: (r.order, r.key))


def _roles_of(rule: Rule, params: dict[str, Any]) -> list[str]:
    return list(params.get("roles") or rule.roles)


def _concerns(rule: Rule, params: dict[str, Any], person: Any) -> bool:
    roles = _roles_of(rule, params)
    if EVERYONE in roles or any(r in roles for r in person.roles):
        return True
    return person.id in [int(i) for i in params.get("people") or [] if parse_id(str(i)) is not None]


def _line(ctx: Ctx, rule: Rule, enabled: bool, params: dict[str, Any], *, with_roles: bool) -> str:
    tr = ctx.tr
    desc = rule.schedule.describe(tr, params)
    text = f"• <b>{ctx.t(rule.title)}</b> — {desc}"
    if not enabled:
        return text + " · " + ctx.t("off")
    nxt = rule.schedule.next_at(ctx.local_now(), params, school_days_off(ctx.school.settings if ctx.school else {}))
    if nxt is not None:
        text += " · " + ctx.t("next: {when}", when=tr.datetime(nxt))
    if with_roles:
        names = [ctx.t("everyone") if r == EVERYONE else ctx.t(ROLE_TITLES[Role(r)]) if r in Role._value2member_map_
                 else r for r in _roles_of(rule, params)]
        text += " · " + ", ".join(names)
    if rule.regulation:
        text += f" <i>({rule.regulation})</i>"
    return text


def _is_principal(ctx: Ctx) -> bool:
    return ctx.person is not None and ctx.person.has_role(Role.PRINCIPAL)


def start(ctx: Ctx) -> Step:
    """Show my reminders; the principal also sees the school's calendar (``/lich cài đặt`` edits it)."""
    assert ctx.person is not None and ctx.school is not None
    if fold(ctx.inbound.args or "") in SETTINGS_WORDS:
        if not _is_principal(ctx):
            return Step.done(Reply(ctx.t("Only the principal can change the school's reminder calendar.")))
        return _pick(ctx)
    school_id = ctx.school.id or 0
    mine: list[str] = []
    school: list[str] = []
    for rule in _rules(ctx):
        enabled, params = rule_params(ctx.session, school_id, rule)
        if enabled and _concerns(rule, params, ctx.person):
            mine.append(_line(ctx, rule, enabled, params, with_roles=False))
        school.append(_line(ctx, rule, enabled, params, with_roles=True))
    lines = [ctx.t("📅 <b>Your reminders</b>")]
    lines += mine or [ctx.t("Nothing is scheduled for you.")]
    if not _is_principal(ctx):
        return Step.done(Reply("\n".join(lines)))
    lines += ["", ctx.t("🏫 <b>The school's calendar</b>"), *school]
    return Step.goto("view", Reply("\n".join(lines), buttons=keyboard(
        choice(ctx.t("⚙️ Settings"), "settings"), choice(ctx.t("Done"), "done"), per_row=2)))


def view(ctx: Ctx, msg: Inbound) -> Step:
    """⚙️ opens the settings (principal only)."""
    if choice_value(msg) == "settings" and _is_principal(ctx):
        return _pick(ctx)
    return Step.done(Reply(ctx.t("OK.")))


def _pick(ctx: Ctx) -> Step:
    assert ctx.school is not None
    buttons = []
    for rule in _rules(ctx):
        enabled, _ = rule_params(ctx.session, ctx.school.id or 0, rule)
        buttons.append(choice(("✅ " if enabled else "⏸ ") + ctx.t(rule.title), f"r:{rule.key}"))
    buttons.append(choice(ctx.t("Done"), "done"))
    return Step.goto("pick", Reply(ctx.t("Which reminder do you want to change?"),
                                   buttons=keyboard(*buttons, per_row=1)))


def pick(ctx: Ctx, msg: Inbound) -> Step:
    """A rule from the list."""
    value = choice_value(msg) or ""
    if value == "done":
        return Step.done(Reply(ctx.t("The calendar is saved.")))
    rule = ctx.registry.rules.get(value[2:]) if value.startswith("r:") else None
    if rule is None or not _is_principal(ctx):
        return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))
    ctx.data["rule"] = rule.key
    return _rule_screen(ctx, rule)


def _rule_screen(ctx: Ctx, rule: Rule, note: str = "") -> Step:
    assert ctx.school is not None
    enabled, params = rule_params(ctx.session, ctx.school.id or 0, rule)
    text = (note + "\n" if note else "") + _line(ctx, rule, enabled, params, with_roles=True)
    buttons: list[Button] = [choice(ctx.t("⏸ Switch off") if enabled else ctx.t("▶️ Switch on"), "toggle")]
    if enabled:
        buttons.append(choice(ctx.t("▶️ Run now"), "run"))
    sched = rule.schedule
    if isinstance(sched, Monthly | Quarterly | Weekly | EveryNDays):
        buttons.append(choice(ctx.t("📆 Change the day"), "day"))
    if not isinstance(sched, Continuous):
        buttons.append(choice(ctx.t("🕗 Change the time"), "hour"))
    buttons += [choice(ctx.t("👥 Recipients"), "roles"), choice(ctx.t("↩ Back"), "back")]
    return Step.goto("rule", Reply(text, buttons=keyboard(*buttons, per_row=2)))


def _current(ctx: Ctx) -> Rule | None:
    return ctx.registry.rules.get(str(ctx.data.get("rule", "")))


def rule_(ctx: Ctx, msg: Inbound) -> Step:
    """Switch, or go to one of the editors."""
    rule = _current(ctx)
    value = choice_value(msg)
    if rule is None or ctx.school is None or not _is_principal(ctx):
        return Step.done(Reply(ctx.t("Only the principal can change the school's reminder calendar.")))
    if value == "back":
        return _pick(ctx)
    if value == "run":
        # this period's occurrence, under the scheduler's keys (never twice); the rule comes from the
        # conversation's draft and the principal check above, never from the payload
        result = run_rule_now(ctx, ctx.school.id or 0, rule.key)
        return _rule_screen(ctx, rule, result.message(ctx.tr, quiet=ctx.settings.quiet_window()))
    if value == "toggle":
        enabled, _ = rule_params(ctx.session, ctx.school.id or 0, rule)
        set_rule(ctx, ctx.school.id or 0, rule, enabled=not enabled)
        return _rule_screen(ctx, rule, ctx.t("Switched on.") if not enabled else ctx.t("Switched off."))
    if value == "day":
        sched = rule.schedule
        if isinstance(sched, Weekly):
            days = [choice(ctx.tr.date(_monday_plus(i), "EEEE"), f"wd{i}") for i in range(7)]
            return Step.goto("day", Reply(ctx.t("Which day of the week?"), buttons=keyboard(*days, per_row=4)))
        if isinstance(sched, EveryNDays):
            return Step.goto("day", Reply(ctx.t("Every how many days? Type a number from 1 to 90.")))
        return Step.goto("day", Reply(ctx.t("Which day of the month? Type a number from 1 to 28.")))
    if value == "hour":
        if isinstance(rule.schedule, DailyAt):
            return Step.goto("hour", Reply(ctx.t("At which hours? For example: 8h, 10h, 14h, 16h.")))
        return Step.goto("hour", Reply(ctx.t("At what time? For example 8h or 14:00.")))
    if value == "roles":
        return _roles_screen(ctx, rule)
    return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))


def _monday_plus(i: int) -> Any:
    from datetime import date, timedelta

    return date(2026, 1, 5) + timedelta(days=i)


_NUM = re.compile(r"^\s*(\d{1,3})\s*$")


def day(ctx: Ctx, msg: Inbound) -> Step:
    """A weekday button, a day of the month (1–28) or a number of days (1–90)."""
    rule = _current(ctx)
    if rule is None or ctx.school is None or not _is_principal(ctx):
        return Step.done(Reply(ctx.t("Only the principal can change the school's reminder calendar.")))
    sched = rule.schedule
    value = choice_value(msg) or ""
    if isinstance(sched, Weekly):
        weekday = parse_id(value[2:]) if value.startswith("wd") else None
        if weekday is None or weekday > 6:
            return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))
        params: dict[str, Any] = {"weekday": weekday}
    else:
        m = _NUM.match(msg.text or "")
        top = 90 if isinstance(sched, EveryNDays) else 28
        if not m or not 1 <= int(m.group(1)) <= top:
            return Step.stay(Reply(ctx.t("Please type a number from 1 to {max}.", max=top)))
        params = {"days": int(m.group(1))} if isinstance(sched, EveryNDays) else {"day": int(m.group(1))}
    set_rule(ctx, ctx.school.id or 0, rule, params=params)
    return _rule_screen(ctx, rule, ctx.t("Saved."))


def hour(ctx: Ctx, msg: Inbound) -> Step:
    """``8h``, ``14:00``; for several-times-a-day rules a list ``8h, 10h, 14h``."""
    rule = _current(ctx)
    if rule is None or ctx.school is None or not _is_principal(ctx):
        return Step.done(Reply(ctx.t("Only the principal can change the school's reminder calendar.")))
    parts = [p for p in re.split(r"[,;]+|\s+và\s+|\s+va\s+", msg.text or "") if p.strip()]
    times = [parse_time(p) for p in parts]
    if not times or any(t is None for t in times) or (len(times) > 1 and not isinstance(rule.schedule, DailyAt)):
        return Step.stay(Reply(ctx.t("I could not read that time. Type it like 8h or 14:00.")))
    hours = sorted({t.hour for t in times if t is not None})
    params = {"hours": hours} if isinstance(rule.schedule, DailyAt) else {"hour": hours[0]}
    set_rule(ctx, ctx.school.id or 0, rule, params=params)
    return _rule_screen(ctx, rule, ctx.t("Saved."))


_ROLE_CHOICES = (Role.PRINCIPAL, Role.VICE_PRINCIPAL, Role.IT, Role.GUARD_LEAD, Role.SECRETARY, Role.BOARD_HEAD,
                 Role.DEPT_HEAD, Role.EQUIPMENT, Role.ACCOUNTANT, Role.TEACHER)


def _roles_screen(ctx: Ctx, rule: Rule) -> Step:
    assert ctx.school is not None
    _, params = rule_params(ctx.session, ctx.school.id or 0, rule)
    chosen = _roles_of(rule, params)
    buttons = [choice(("☑️ " if EVERYONE in chosen else "⬜ ") + ctx.t("everyone"), f"ro:{EVERYONE}")]
    buttons += [choice(("☑️ " if r in chosen else "⬜ ") + ctx.t(ROLE_TITLES[r]), f"ro:{r.value}")
                for r in _ROLE_CHOICES]
    buttons.append(choice(ctx.t("✔ Done"), "ro-done"))
    return Step.goto("roles", Reply(ctx.t("Who receives “{rule}”? Tap to add or remove.", rule=ctx.t(rule.title)),
                                    buttons=keyboard(*buttons, per_row=2)))


def roles(ctx: Ctx, msg: Inbound) -> Step:
    """Toggle a role; at least one must stay."""
    rule = _current(ctx)
    if rule is None or ctx.school is None or not _is_principal(ctx):
        return Step.done(Reply(ctx.t("Only the principal can change the school's reminder calendar.")))
    value = choice_value(msg) or ""
    if value == "ro-done":
        return _rule_screen(ctx, rule, ctx.t("Saved."))
    valid = {EVERYONE, *(r.value for r in _ROLE_CHOICES)}
    if not value.startswith("ro:") or value[3:] not in valid:
        return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))
    _, params = rule_params(ctx.session, ctx.school.id or 0, rule)
    chosen = _roles_of(rule, params)
    role = value[3:]
    new = [r for r in chosen if r != role] if role in chosen else [*chosen, role]
    if not new:
        return Step.stay(Reply(ctx.t("At least one recipient must stay.")))
    set_rule(ctx, ctx.school.id or 0, rule, params={"roles": new})
    return _roles_screen(ctx, rule)


FLOW = Flow(
    name="calendar",
    command="lich",
    title=N_("Reminder calendar"),
    description=N_("See your reminders and the school's calendar"),
    icon="📅",
    start=start,
    states={"view": view, "pick": pick, "rule": rule_, "day": day, "hour": hour, "roles": roles},
    order=80,
)

#: held notices (nobody reachable when they fell due) go out as soon as the person writes
WORKFLOW = Workflow(name="calendar", title=FLOW.title, flows=(FLOW,), rules=RULES, on_person_seen=(release_held,))
