"""The compliance calendar from the command line: print a school's rules (next and last run), load
their settings from a file, or run one rule's occurrence of this period now
(``python main.py calendar [--school NAME] [--load lich.toml] [--run-now RULE]``).

The file is TOML (or JSON) with one table per rule key; every field is optional::

    [footage_review]
    enabled = true
    days = 15            # EveryNDays
    hour = 8
    roles = ["guard_lead", "it"]

    [article_quota]
    day = 20             # Monthly / Quarterly: day of the month
    [malware_scan]
    weekday = 0          # Weekly: 0 = Monday
    [mailbox_check]
    enabled = true
    hours = [8, 10, 14, 16]   # DailyAt

Every problem is reported with the rule and field, and nothing is saved unless the whole file is
valid."""

from __future__ import annotations

import json
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from bot.config import Settings
from bot.core import Ctx, Inbound, Registry, Sender, Services
from bot.core.clock import Clock, SystemClock
from bot.engine.reminders import (
    DailyAt,
    EveryNDays,
    Monthly,
    Quarterly,
    Rule,
    RunNowResult,
    RunNowStatus,
    Weekly,
    rule_status,
    run_rule_now,
)
from bot.i18n import Translator
from bot.roles import Role
from bot.text import fold
from storage import audit
from storage.db import Database
from storage.models import RuleSetting, School, utcnow

_RANGES: dict[str, tuple[int, int]] = {"day": (1, 28), "hour": (0, 23), "days": (1, 90), "weekday": (0, 6)}


def _fields_for(rule: Rule) -> set[str]:
    s = rule.schedule
    if isinstance(s, Monthly | Quarterly):
        return {"day", "hour"}
    if isinstance(s, Weekly):
        return {"weekday", "hour"}
    if isinstance(s, EveryNDays):
        return {"days", "hour"}
    if isinstance(s, DailyAt):
        return {"hours"}
    return set()


def check_entry(rule: Rule, entry: dict[str, Any], tr: Translator) -> tuple[bool | None, dict[str, Any], list[str]]:
    """(enabled, params, problems) of one table of the file."""
    problems: list[str] = []
    params: dict[str, Any] = {}
    enabled = entry.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        problems.append(tr.t("{rule}: “enabled” must be true or false.", rule=rule.key))
        enabled = None
    allowed = _fields_for(rule) | {"enabled", "roles"}
    for key, value in entry.items():
        if key not in allowed:
            problems.append(tr.t("{rule}: “{field}” cannot be set for this reminder.", rule=rule.key, field=key))
        elif key in _RANGES:
            lo, hi = _RANGES[key]
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                problems.append(tr.t("{rule}: “{field}” must be a whole number from {lo} to {hi}.",
                                     rule=rule.key, field=key, lo=lo, hi=hi))
            else:
                params[key] = value
        elif key == "hours":
            if not isinstance(value, list) or not value or not all(
                    isinstance(h, int) and not isinstance(h, bool) and 0 <= h <= 23 for h in value):
                problems.append(tr.t("{rule}: “hours” must be a list of hours from 0 to 23.", rule=rule.key))
            else:
                params["hours"] = sorted(set(value))
        elif key == "roles":
            valid = {r.value for r in Role} | {"*"}
            if not isinstance(value, list) or not value or not all(isinstance(r, str) and r in valid for r in value):
                problems.append(tr.t("{rule}: “roles” must be a list of role keys (for example \"it\", "
                                     "\"guard_lead\") or \"*\" for everyone.", rule=rule.key))
            else:
                params["roles"] = list(dict.fromkeys(value))
    return enabled, params, problems


def _read(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    if path.suffix.lower() == ".json":
        data = json.loads(raw.decode("utf-8-sig"))
    else:
        data = tomllib.loads(raw.decode("utf-8-sig"))
    if not isinstance(data, dict):
        raise ValueError("top level")
    return data


def find_school(s: Session, name: str | None) -> School | None:
    schools = list(s.exec(select(School)))
    if name:
        return next((sc for sc in schools if fold(sc.name) == fold(name)), None)
    return schools[0] if len(schools) == 1 else None


def load_file(db: Database, registry: Registry, path: str | Path, *, school_name: str | None,
              tr: Translator) -> tuple[bool, list[str]]:
    """Apply the file to the school's rule settings (all or nothing); returns (ok, report lines)."""
    path = Path(path)
    try:
        data = _read(path)
    except FileNotFoundError:
        return False, [tr.t("The file {file} does not exist.", file=str(path))]
    except (ValueError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return False, [tr.t("The file {file} is not valid TOML or JSON: {error}", file=path.name,
                            error=str(exc)[:200])]
    problems: list[str] = []
    changes: list[tuple[Rule, bool | None, dict[str, Any]]] = []
    for key, entry in data.items():
        rule = registry.rules.get(key)
        if rule is None:
            problems.append(tr.t("Unknown reminder “{rule}”. Known: {known}.", rule=key,
                                 known=", ".join(sorted(registry.rules))))
            continue
        if not isinstance(entry, dict):
            problems.append(tr.t("{rule}: expected a table of settings.", rule=key))
            continue
        enabled, params, found = check_entry(rule, entry, tr)
        problems += found
        changes.append((rule, enabled, params))
    if problems:
        return False, [*problems, tr.t("Nothing was saved.")]

    def apply(s: Session) -> list[str] | None:
        school = find_school(s, school_name)
        if school is None or school.id is None:
            return None
        lines = []
        for rule, enabled, params in changes:
            row = s.get(RuleSetting, (school.id, rule.key)) or RuleSetting(school_id=school.id, rule=rule.key,
                                                                           enabled=rule.enabled, params={})
            if enabled is not None:
                row.enabled = enabled
            row.params = {**(row.params or {}), **params}
            row.updated_at = utcnow()
            s.add(row)
            audit.record(s, action="calendar.rule_changed", school_id=school.id, subject=f"rule:{rule.key}",
                         details={"enabled": row.enabled, "params": row.params, "source": path.name})
            lines.append(tr.t("{rule}: saved.", rule=rule.key))
        return lines

    result = db.run_sync(apply)
    if result is None:
        return False, [tr.t("Which school? Give its name with --school.")]
    return True, result


def render(db: Database, registry: Registry, *, school_name: str | None, tr: Translator,
           now: datetime | None = None) -> tuple[bool, list[str]]:
    """The school's rules, one a line: key, on/off, title · schedule · next run · last run · recipients."""
    def go(s: Session) -> list[str] | None:
        school = find_school(s, school_name)
        if school is None or school.id is None:
            return None
        at = now or datetime.now(tr.tz)
        lines = [tr.t("Reminder calendar of {school}:", school=school.name)]
        for st in rule_status(s, registry, school.id, at, tr):
            state = tr.t("on") if st.enabled else tr.t("off")
            when = tr.datetime(st.next_at) if st.next_at else "—"
            last = (tr.t("last run: {when}", when=tr.datetime(st.last_at.astimezone(tr.tz))) if st.last_at
                    else tr.t("never run"))
            roles = ", ".join(st.roles) or "—"
            lines.append(f"  {st.key:<22} {state:<6} {tr.t(st.title)} · {st.schedule} · "
                         f"{when} · {last} · {roles}")
        return lines

    out = db.run_sync(go)
    if out is None:
        return False, [tr.t("Which school? Give its name with --school.")]
    return True, out


class _SentByTheBot:
    """The fan-out as the CLI sees it: notices stay ``queued`` in the database and the running bot's
    fan-out sends them at its next scheduler tick."""

    async def drain(self, *, max_rounds: int = 0) -> int:
        return 0


def run_now(db: Database, registry: Registry, settings: Settings, rule_key: str, *, school_name: str | None,
            tr: Translator, clock: Clock | None = None) -> tuple[bool, list[str]]:
    """``calendar --run-now RULE``: this period's occurrence now (:func:`run_rule_now`, the
    scheduler's keys), from the command line. Returns (ok, lines to print)."""
    clock = clock or SystemClock()
    services = Services(settings=settings, registry=registry, clock=clock, fanout=_SentByTheBot())

    def go(s: Session) -> RunNowResult | None:
        school = find_school(s, school_name)
        if school is None or school.id is None:
            return None
        ctx = Ctx(session=s, services=services, inbound=Inbound(channel="cli", user_id="", chat_id="",
                                                                update_key=""),
                  person=None, school=school, tr=tr, now=clock.now())
        result = run_rule_now(ctx, school.id, rule_key)
        Sender.persist(s, ctx.outbox)  # anything sent outside a notice: the bot's outbox recovery sends it
        return result

    try:
        result = db.run_sync(go)
    except IntegrityError:  # the bot's scheduler wrote this period's keys at the same moment
        result = db.run_sync(go)
    if result is None:
        return False, [tr.t("Which school? Give its name with --school.")]
    lines = [result.message(tr, quiet=settings.quiet_window())]
    if result.status == RunNowStatus.UNKNOWN:
        lines.append(tr.t("Known: {known}.", known=", ".join(sorted(registry.rules))))
    if result.sent:
        lines.append(tr.t("The running bot sends them at its next check (within {n} seconds).",
                          n=settings.scheduler_tick_seconds))
    return result.ok, lines
