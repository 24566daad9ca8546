"""Incidents: per-school settings, numbering, routing, recipient cards, the actions on a card
(acknowledge, resolve, pass up, order an account locked), escalation and the lists.

The conversational parts (``/suco``, the guards' quick path, the note prompts, ``/ngungdichvu``)
live in ``bot/flows/incidents*.py``; the report to the Sở / Phòng GD&ĐT in
:mod:`bot.flows.incidents.docx`.

* **Numbering** (:func:`allocate_number`): ``SC-<year>-<nnnn>`` per school and local year, from a
  counter row bumped with ``UPDATE … SET last = last + 1 RETURNING last`` (PostgreSQL locks the
  row, SQLite has one writer), so two reports at the same second never share a number.
* **Routing** (:func:`route`): tokens per incident group — a role key, ``bgh`` (principal and
  vice principals), ``camera_unit`` (heads of the unit keeping the camera, 000 Điều 6),
  ``dept_head`` (head of the reporter's unit) or ``person:<id>``; urgent incidents add
  ``urgent_to`` (BGH by default, 000 Điều 7.1). A school overrides any of it in
  ``School.settings["incidents"]`` (:class:`bot.flows.incidents.settings.IncidentSettings`;
  ``python main.py settings set incidents.routes ...``).
* **Cards**: every recipient gets a card with ``🆗 Tiếp nhận``, ``✔ Đã xử lý`` and
  ``⬆️ Chuyển cấp trên``; payloads are ``ic:<id>:<action>`` and decide nothing: the server looks the
  incident up and checks the person. The first acknowledgement wins by a conditional ``UPDATE …
  WHERE status = 'open'``; afterwards every card (tracked as ``SentMessage`` ``incident``/id) is
  edited and the reporter is told.
* **Escalation** (:func:`escalation_tick`, run by two ``Continuous`` calendar rules): an open
  incident not acknowledged in ``urgent_escalate_minutes`` (10) / ``normal_escalate_hours`` (24)
  goes to the principal, one more period later to all of BGH; each step is claimed with a
  conditional update of ``escalation_level`` and each notice has its own idempotency key, so
  restarts never repeat one. Normal reports made during quiet hours are held and delivered by the
  same rule when the quiet hours end; urgent ones never wait.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from bot.core import Button, Ctx, Keyboard, MessageRef, Outbound, OutFile, Reply, Step, destinations, keyboard
from bot.engine import waiting
from bot.flows.footage.models import Camera
from bot.flows.incidents.common import ICONS, IT_KINDS, KINDS, attachments, group_of
from bot.flows.incidents.models import Incident, IncidentAttachment, IncidentCounter, IncidentStatus
from bot.flows.incidents.settings import DEFAULT_ROUTES, DEFAULTS, IncidentSettings, conf
from bot.i18n import N_, Translator
from bot.roles import BGH, ROLE_TITLES, Role
from bot.steps import parse_payload as parse_payload_of
from bot.text import fold, parse_id
from storage.models import Person, School, SentMessage
from storage.people import people_with_role, people_with_roles

if TYPE_CHECKING:
    from bot.engine.reminders import RuleRun

log = logging.getLogger(__name__)

PREFIX = "ic"
CARD = "incident"
ACTIONS = ("ack", "done", "up", "cam", "lock", "files", "doc", "show", "urgent")

# -- numbering ------------------------------------------------------------------------------------
def allocate_number(session: Session, *, school_id: int, year: int) -> int:
    """The next number of the school's year, race-safe (see the module docstring)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(IncidentCounter).values(school_id=school_id, year=year, last=0)
                        .on_conflict_do_nothing(index_elements=["school_id", "year"]))
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(sqlite_insert(IncidentCounter).values(school_id=school_id, year=year, last=0)
                        .on_conflict_do_nothing(index_elements=["school_id", "year"]))
    n = session.execute(update(IncidentCounter)
                        .where(col(IncidentCounter.school_id) == school_id, col(IncidentCounter.year) == year)
                        .values(last=col(IncidentCounter.last) + 1)
                        .returning(col(IncidentCounter.last))
                        .execution_options(synchronize_session=False)).scalar_one()
    return int(n)


def format_number(year: int, seq: int) -> str:
    return f"SC-{year}-{seq:04d}"


# -- routing --------------------------------------------------------------------------------------
def _bgh(session: Session, school_id: int) -> list[Person]:
    return people_with_roles(session, school_id=school_id, roles=[r.value for r in (Role.PRINCIPAL,
                                                                                  Role.VICE_PRINCIPAL)])


def principals(session: Session, school_id: int) -> list[Person]:
    """Principal(s); the vice principals when the school has none."""
    return (people_with_role(session, school_id=school_id, role=Role.PRINCIPAL)
            or people_with_role(session, school_id=school_id, role=Role.VICE_PRINCIPAL))


def _unit_heads(session: Session, school_id: int, unit: str) -> list[Person]:
    if not unit.strip():
        return []
    want = fold(unit)
    return [p for p in people_with_roles(session, school_id=school_id, roles=[Role.DEPT_HEAD, Role.GUARD_LEAD])
            if fold(p.unit or "") == want]


def resolve_tokens(session: Session, school_id: int, tokens: Iterable[str], *, reporter: Person | None,
                   camera: Camera | None) -> list[Person]:
    out: list[Person] = []
    for tok in tokens:
        found: list[Person] = []
        if tok == "bgh":
            found = _bgh(session, school_id)
        elif tok == "camera_unit":
            found = _unit_heads(session, school_id, camera.unit) if camera is not None else []
        elif tok == "dept_head":
            unit = reporter.unit if reporter is not None else ""
            found = [p for p in people_with_role(session, school_id=school_id, role=Role.DEPT_HEAD)
                     if unit and fold(p.unit or "") == fold(unit)]
        elif tok.startswith("person:") and parse_id(tok[7:]) is not None:
            p = session.get(Person, int(tok[7:]))
            found = [p] if p is not None and p.school_id == school_id and p.is_active else []
        elif tok in {r.value for r in Role}:
            found = people_with_role(session, school_id=school_id, role=tok)
        for p in found:
            if all(p.id != q.id for q in out):
                out.append(p)
    return out


def route(session: Session, school: School, *, kind: str, urgent: bool, reporter: Person | None,
          camera: Camera | None) -> list[Person]:
    """Who gets the cards: the group's route (+ ``urgent_to``), never the reporter (unless nobody
    else), and the principal when the route finds nobody, so no report is lost."""
    c = IncidentSettings.of(school)
    assert school.id is not None
    tokens = list(c.routes.get(group_of(kind)) or DEFAULT_ROUTES.get(group_of(kind), []))
    if urgent:
        tokens += c.urgent_to
    people = resolve_tokens(session, school.id, tokens, reporter=reporter, camera=camera)
    others = [p for p in people if reporter is None or p.id != reporter.id]
    if others:
        return others
    fallback = [p for p in principals(session, school.id) if reporter is None or p.id != reporter.id]
    return fallback or people


# -- who may do what ------------------------------------------------------------------------------
def is_bgh(person: Person) -> bool:
    return person.has_role(*BGH)


def may_view(person: Person, inc: Incident) -> bool:
    return (person.is_active and person.school_id == inc.school_id
            and (person.id == inc.reporter_id or person.id in (inc.recipient_ids or [])
                 or person.id == inc.owner_id or is_bgh(person)))


def may_act(person: Person, inc: Incident) -> bool:
    """Acknowledge / pass up: the people it was routed or escalated to, and BGH."""
    return (person.is_active and person.school_id == inc.school_id
            and (person.id in (inc.recipient_ids or []) or is_bgh(person)))


def may_resolve(person: Person, inc: Incident) -> bool:
    """The owner, BGH, or — while nobody owns it — anyone it was routed to (they become the owner)."""
    if not may_act(person, inc):
        return False
    return is_bgh(person) or inc.owner_id is None or inc.owner_id == person.id


def may_order_lock(person: Person, inc: Incident) -> bool:
    return (inc.kind == "it_account" and person.is_active and person.school_id == inc.school_id
            and person.has_role(Role.PRINCIPAL))


# -- display --------------------------------------------------------------------------------------
def kind_label(tr: Translator, kind: str) -> str:
    return f"{ICONS.get(kind, '📝')} {tr.t(KINDS.get(kind, KINDS['other']))}"


def _name(session: Session, person_id: int | None) -> str:
    p = session.get(Person, person_id) if person_id else None
    return p.full_name if p else "?"


def person_label(tr: Translator, p: Person) -> str:
    titles = []
    for r in p.roles:
        try:
            titles.append(tr.t(ROLE_TITLES[Role(r)]))
        except (ValueError, KeyError):
            continue
    return f"{p.full_name} ({', '.join(titles)})" if titles else p.full_name


def age_text(tr: Translator, delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return tr.t("{days} d {hours} h", days=days, hours=hours)
    if hours:
        return tr.t("{hours} h {minutes} min", hours=hours, minutes=mins)
    return tr.t("{minutes} min", minutes=mins)


def status_line(session: Session, tr: Translator, inc: Incident) -> str:
    if inc.status == IncidentStatus.RESOLVED:
        return tr.t("✔ Resolved by {name} at {time}", name=_name(session, inc.resolved_by),
                    time=tr.datetime(inc.resolved_at) if inc.resolved_at else "")
    if inc.status == IncidentStatus.ACKNOWLEDGED:
        return tr.t("🆗 Acknowledged by {name} at {time}", name=_name(session, inc.owner_id),
                    time=tr.datetime(inc.acknowledged_at) if inc.acknowledged_at else "")
    return tr.t("⏳ Not acknowledged yet")


def card_text(session: Session, tr: Translator, inc: Incident) -> str:
    if inc.urgent:
        lines = [tr.t("🚨 <b>URGENT incident {number}</b>", number=inc.number)]
    else:
        lines = [tr.t("📋 <b>Incident {number}</b>", number=inc.number)]
    lines.append(tr.t("Type: {kind}", kind=kind_label(tr, inc.kind)))
    if inc.place:
        lines.append(tr.t("Place: {place}", place=inc.place))
    if inc.latitude is not None and inc.longitude is not None:
        lines.append(tr.t("📍 Shared location: https://maps.google.com/?q={lat},{lon}",
                          lat=f"{inc.latitude:.6f}", lon=f"{inc.longitude:.6f}"))
    cam = session.get(Camera, inc.camera_id) if inc.camera_id else None
    if cam is not None:
        lines.append(tr.t("Camera: {name}", name=cam.name))
    if inc.occurred_at is not None:
        lines.append(tr.t("Happened at: {time}", time=tr.datetime(inc.occurred_at)))
    if inc.account:
        lines.append(tr.t("Account concerned: {account}", account=inc.account))
    reporter = session.get(Person, inc.reporter_id)
    lines.append(tr.t("Reported by {name} at {time}", name=person_label(tr, reporter) if reporter else "?",
                      time=tr.datetime(inc.created_at)))
    if inc.description:
        lines.append(tr.t("Description: {text}", text=inc.description))
    files = attachments(session, inc)
    voices = sum(1 for a in files if a.kind in ("voice", "audio"))
    if voices and not inc.description:
        lines.append(tr.t("Description: (voice note attached)"))
    if files:
        lines.append(tr.tn("📎 {n} attachment", "📎 {n} attachments", len(files)))
    lines.append(status_line(session, tr, inc))
    if inc.status == IncidentStatus.RESOLVED and inc.resolution_note:
        lines.append(tr.t("How it was handled: {note}", note=inc.resolution_note))
    if inc.escalation_level == 1:
        lines.append(tr.t("⚠️ Passed to the principal: not acknowledged in time."))
    elif inc.escalation_level >= 2:
        lines.append(tr.t("⚠️ Passed to all of BGH: not acknowledged in time."))
    if inc.reported_up_at is not None:
        lines.append(tr.t("⬆️ Passed up by {name} at {time}; the report to the authority is with the "
                          "principal.", name=_name(session, inc.reported_up_by), time=tr.datetime(inc.reported_up_at)))
    if inc.lock_ordered_at is not None:
        lines.append(tr.t("🔒 Account lock ordered by {name} at {time}.", name=_name(session, inc.lock_ordered_by),
                          time=tr.datetime(inc.lock_ordered_at)))
    return "\n".join(lines)


def payload(inc_id: int, action: str) -> str:
    return f"{PREFIX}:{inc_id}:{action}"


def parse_payload(data: str | None) -> tuple[int, str] | None:
    """``ic:12:ack`` → (12, "ack"); anything else → None."""
    parsed = parse_payload_of(data, PREFIX, ACTIONS)
    return (parsed.id, parsed.action) if parsed else None


def footage_possible(inc: Incident) -> bool:
    return inc.camera_id is not None


def card_buttons(session: Session, tr: Translator, inc: Incident, person: Person | None) -> Keyboard:
    if person is None or inc.id is None:
        return ()
    i = inc.id
    rows: list[list[Button]] = []
    open_ = inc.status != IncidentStatus.RESOLVED
    if open_ and may_act(person, inc):
        first: list[Button] = []
        if inc.status == IncidentStatus.OPEN:
            first.append(Button(tr.t("🆗 Acknowledge"), payload(i, "ack")))
        if may_resolve(person, inc):
            first.append(Button(tr.t("✔ Resolved"), payload(i, "done")))
        if first:
            rows.append(first)
        if inc.reported_up_at is None and (inc.status == IncidentStatus.OPEN or may_resolve(person, inc)):
            rows.append([Button(tr.t("⬆️ Pass up"), payload(i, "up"))])
    extra: list[Button] = []
    if open_ and footage_possible(inc) and may_view(person, inc):
        extra.append(Button(tr.t("🎥 Extract camera footage"), payload(i, "cam")))
    if inc.lock_ordered_at is None and may_order_lock(person, inc):
        extra.append(Button(tr.t("🔒 Order the account locked"), payload(i, "lock")))
    n = len(attachments(session, inc))
    if n and may_view(person, inc):
        extra.append(Button(tr.t("📎 Attachments ({n})", n=n), payload(i, "files")))
    if inc.reported_up_at is not None and is_bgh(person) and person.school_id == inc.school_id:
        extra.append(Button(tr.t("📄 Report to the authority"), payload(i, "doc")))
    for k in range(0, len(extra), 2):
        rows.append(extra[k:k + 2])
    return keyboard(*rows)


def card(session: Session, tr: Translator, inc: Incident, person: Person | None, prefix: str | None = None) -> Reply:
    text = card_text(session, tr, inc)
    if prefix:
        text = tr.t(prefix) + "\n\n" + text
    return Reply(text, buttons=card_buttons(session, tr, inc, person), track=(CARD, str(inc.id)))


def card_maker(session: Session, inc: Incident, person: Person | None,
               prefix: str | None = None) -> Callable[[Translator], Reply]:
    """``make(tr)`` for a notice: the card as this person should see it."""
    def make(tr: Translator) -> Reply:
        return card(session, tr, inc, person, prefix)
    return make


def file_replies(tr: Translator, inc: Incident, files: Sequence[IncidentAttachment]) -> list[Reply]:
    out: list[Reply] = []
    for n, a in enumerate(files, 1):
        kind = a.kind if a.kind in ("photo", "video") else "document"
        name = a.file_name or f"{inc.number}-{n}{Path(a.path).suffix}"
        out.append(Reply(tr.t("📎 {number} · attachment {n}/{total}", number=inc.number, n=n, total=len(files)),
                         file=OutFile(kind=kind, path=a.path, file_name=name, mime=a.mime)))
    return out


def send_card(ctx: Ctx, inc: Incident, person: Person, *, prefix: str | None = None, with_files: bool = False) -> bool:
    """Queue a card (and, for a first delivery, the attachments) for ``person``; one who has not linked
    the assistant gets it, with the attachments, when they link (:func:`deliver_waiting`)."""
    files = attachments(ctx.session, inc) if with_files else []
    if not ctx.send_to(person, card_maker(ctx.session, inc, person, prefix)):
        waiting.keep(ctx, person, CARD, inc.id, prefix=prefix)
        return False
    for r in file_replies(ctx.translator_for(person), inc, files):
        ctx.send_to(person, r)
    return True


def refresh_cards(ctx: Ctx, inc: Incident) -> None:
    """Edit every card of this incident to its current state (each with that person's buttons)."""
    rows = ctx.session.exec(select(SentMessage).where(SentMessage.ref_kind == CARD,
                                                      SentMessage.ref_id == str(inc.id))).all()
    for row in rows:
        person = ctx.session.get(Person, row.person_id) if row.person_id else None
        tr = ctx.translator_for(person) if person else ctx.tr
        r = card(ctx.session, tr, inc, person)
        ctx.outbox.append(Outbound(row.channel, row.chat_id,
                                   Reply(r.text, buttons=r.buttons,
                                         edit=MessageRef(row.channel, row.chat_id, row.message_id)),
                                   row.person_id))


def tell_reporter(ctx: Ctx, inc: Incident, make: Callable[[Translator], str], *, actor: Person | None = None) -> None:
    reporter = ctx.session.get(Person, inc.reporter_id)
    if reporter is None or (actor is not None and reporter.id == actor.id):
        return
    ctx.send_to(reporter, lambda tr: Reply(make(tr)))


def add_recipients(inc: Incident, people: Iterable[Person]) -> None:
    ids = list(inc.recipient_ids or [])
    for p in people:
        if p.id is not None and p.id not in ids:
            ids.append(p.id)
    inc.recipient_ids = ids


# -- the actions ------------------------------------------------------------------------------------
def load(ctx: Ctx, inc_id: int, action: str) -> tuple[Incident | None, Reply | None]:
    """Look the incident up in the person's school; a stranger learns nothing about it."""
    person = ctx.person
    assert person is not None
    inc = ctx.session.get(Incident, inc_id)
    if inc is None or inc.school_id != person.school_id or not may_view(person, inc):
        ctx.audit("incident.refused", f"incident:{inc_id}", action=action,
                  reason="unknown" if inc is None else "school" if inc.school_id != person.school_id else "role")
        return None, Reply(ctx.t("You cannot act on this incident: it was not sent to you."))
    return inc, None


def refuse(ctx: Ctx, inc: Incident, action: str, reason: str) -> list[Reply]:
    ctx.audit("incident.refused", f"incident:{inc.id}", action=action, reason=reason)
    return [Reply(ctx.t("You cannot act on this incident: it was not sent to you."))]


def already_taken(ctx: Ctx, inc: Incident) -> Reply:
    if inc.status == IncidentStatus.RESOLVED:
        return Reply(ctx.t("Incident {number} was already resolved by {name} at {time}.", number=inc.number,
                           name=_name(ctx.session, inc.resolved_by),
                           time=ctx.tr.datetime(inc.resolved_at) if inc.resolved_at else ""))
    return Reply(ctx.t("Incident {number} was already acknowledged by {name} at {time}.", number=inc.number,
                       name=_name(ctx.session, inc.owner_id),
                       time=ctx.tr.datetime(inc.acknowledged_at) if inc.acknowledged_at else ""))


def acknowledge(ctx: Ctx, inc: Incident) -> list[Reply]:
    """🆗: the first one becomes the owner (conditional update); every card is edited."""
    person = ctx.person
    assert person is not None and person.id is not None
    if not may_act(person, inc):
        return refuse(ctx, inc, "ack", "not_routed")
    res = ctx.session.execute(
        update(Incident).where(col(Incident.id) == inc.id, col(Incident.status) == IncidentStatus.OPEN)
        .values(status=IncidentStatus.ACKNOWLEDGED, owner_id=person.id, acknowledged_at=ctx.now, updated_at=ctx.now)
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        ctx.session.expire_all()  # someone else won: read what they wrote
        ctx.session.refresh(inc)
        return [already_taken(ctx, inc)]
    ctx.session.refresh(inc)
    ctx.audit("incident.acknowledged", f"incident:{inc.id}", number=inc.number)
    refresh_cards(ctx, inc)
    tell_reporter(ctx, inc, lambda tr: tr.t("🆗 Your report {number} was acknowledged by {name}.",
                                            number=inc.number, name=person.full_name), actor=person)
    return [Reply(ctx.t("🆗 You are now in charge of incident {number}. Tap “✔ Resolved” on the card when it "
                        "is dealt with.", number=inc.number))]


def resolve(ctx: Ctx, inc: Incident, note: str) -> list[Reply]:
    """✔ with a note: owner, BGH, or a recipient while nobody owns it (who then becomes the owner)."""
    person = ctx.person
    assert person is not None and person.id is not None
    if not may_resolve(person, inc):
        if may_act(person, inc) and inc.status != IncidentStatus.RESOLVED:
            return [Reply(ctx.t("Incident {number} is in the hands of {name}; only they or BGH can mark it "
                                "resolved.", number=inc.number, name=_name(ctx.session, inc.owner_id)))]
        return refuse(ctx, inc, "done", "not_owner")
    cond = [col(Incident.id) == inc.id, col(Incident.status) != IncidentStatus.RESOLVED]
    if not is_bgh(person):
        cond.append(or_(col(Incident.owner_id).is_(None), col(Incident.owner_id) == person.id))
    was_open = inc.status == IncidentStatus.OPEN
    res = ctx.session.execute(
        update(Incident).where(*cond)
        .values(status=IncidentStatus.RESOLVED, resolved_by=person.id, resolved_at=ctx.now,
                resolution_note=note[:1000], updated_at=ctx.now)
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        ctx.session.expire_all()
        ctx.session.refresh(inc)
        return [already_taken(ctx, inc)]
    ctx.session.refresh(inc)
    if inc.owner_id is None:
        inc.owner_id, inc.acknowledged_at = person.id, ctx.now
        ctx.session.add(inc)
        ctx.session.flush()
    ctx.audit("incident.resolved", f"incident:{inc.id}", number=inc.number, note=note[:1000],
              without_acknowledgement=was_open)
    refresh_cards(ctx, inc)
    tell_reporter(ctx, inc, lambda tr: tr.t("✔ Your report {number} was resolved by {name}: {note}",
                                            number=inc.number, name=person.full_name, note=note[:1000]),
                  actor=person)
    return [Reply(ctx.t("✔ Incident {number} is marked resolved.", number=inc.number))]


def pass_up(ctx: Ctx, inc: Incident, note: str) -> list[Reply]:
    """⬆️: beyond the school's authority (002 Điều 13.2.b). The principal gets the card (if not yet)
    and the report to the Sở / Phòng GD&ĐT as a DOCX, ready to sign; done once."""
    person = ctx.person
    assert person is not None and person.id is not None
    if not may_act(person, inc):
        return refuse(ctx, inc, "up", "not_routed")
    res = ctx.session.execute(
        update(Incident).where(col(Incident.id) == inc.id, col(Incident.reported_up_at).is_(None))
        .values(reported_up_at=ctx.now, reported_up_by=person.id, report_up_note=note[:1000], updated_at=ctx.now)
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        ctx.session.expire_all()
        ctx.session.refresh(inc)
        return [Reply(ctx.t("Incident {number} was already passed up by {name} at {time}.", number=inc.number,
                            name=_name(ctx.session, inc.reported_up_by),
                            time=ctx.tr.datetime(inc.reported_up_at) if inc.reported_up_at else ""))]
    ctx.session.refresh(inc)
    heads = principals(ctx.session, inc.school_id)
    new = [p for p in heads if p.id not in (inc.recipient_ids or [])]
    add_recipients(inc, heads)
    ctx.session.add(inc)
    ctx.session.flush()
    path = write_report(ctx, inc)
    ctx.audit("incident.passed_up", f"incident:{inc.id}", number=inc.number, note=note[:1000],
              report=Path(path).name, to=[p.id for p in heads])
    refresh_cards(ctx, inc)
    for p in new:
        send_card(ctx, inc, p, prefix=N_("⬆️ Passed up to you: this incident is beyond the school's authority."),
                  with_files=True)
    for p in heads:
        ctx.send_to(p, lambda tr: report_reply(tr, inc, path))
    tell_reporter(ctx, inc, lambda tr: tr.t("⬆️ Your report {number} was passed up by {name}; the principal is "
                                            "preparing a report to the authority.",
                                            number=inc.number, name=person.full_name), actor=person)
    if any(p.id == person.id for p in heads):
        return [Reply(ctx.t("⬆️ Incident {number} is passed up. The report to the authority follows, ready to "
                            "sign.", number=inc.number))]
    return [Reply(ctx.t("⬆️ Incident {number} is passed up. The principal received the report to the authority, "
                        "ready to sign.", number=inc.number))]


def report_reply(tr: Translator, inc: Incident, path: str) -> Reply:
    return Reply(tr.t("📄 Report on incident {number} to the authority, ready to print, sign and send.",
                      number=inc.number),
                 file=OutFile(kind="document", path=path, file_name=f"Bao-cao-{inc.number}.docx",
                              mime="application/vnd.openxmlformats-officedocument.wordprocessingml.document"))


def write_report(ctx: Ctx, inc: Incident) -> str:
    """Build the DOCX (see :mod:`bot.flows.incidents.docx`) into ``DATA_DIR/media/reports/<school>``."""
    from bot.flows.incidents.docx import build_report  # python-docx: loaded when a report is made

    school = ctx.session.get(School, inc.school_id)
    assert school is not None
    folder = Path(ctx.settings.media_dir) / "reports" / str(inc.school_id)  # numbers repeat across schools
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"Bao-cao-{inc.number}.docx"
    build_report(ctx.session, inc, school, path=path, today=ctx.today(), tz=ctx.tr.tz)
    inc.report_path = str(path)
    ctx.session.add(inc)
    return str(path)


def order_lock(ctx: Ctx, inc: Incident) -> list[Reply]:
    """🔒 (account misuse, 002 Điều 7.2): recorded once, audited, and the IT team is told."""
    person = ctx.person
    assert person is not None and person.id is not None
    if not may_order_lock(person, inc):
        return refuse(ctx, inc, "lock", "not_principal")
    res = ctx.session.execute(
        update(Incident).where(col(Incident.id) == inc.id, col(Incident.lock_ordered_at).is_(None))
        .values(lock_ordered_at=ctx.now, lock_ordered_by=person.id, updated_at=ctx.now)
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        ctx.session.expire_all()
        ctx.session.refresh(inc)
        return [Reply(ctx.t("The lock of this account was already ordered by {name} at {time}.",
                            name=_name(ctx.session, inc.lock_ordered_by),
                            time=ctx.tr.datetime(inc.lock_ordered_at) if inc.lock_ordered_at else ""))]
    ctx.session.refresh(inc)
    ctx.audit("incident.account_lock_ordered", f"incident:{inc.id}", number=inc.number, account=inc.account)
    it_team = people_with_role(ctx.session, school_id=inc.school_id, role=Role.IT)
    for p in it_team:
        ctx.send_to(p, lambda tr: Reply(tr.t(
            "🔒 The principal {name} orders this account locked: {account} (incident {number}). Lock it now, "
            "then tell its owner (004 Điều 10.3).", name=person.full_name,
            account=inc.account or tr.t("(see the incident)"), number=inc.number)))
    refresh_cards(ctx, inc)
    tell_reporter(ctx, inc, lambda tr: tr.t("🔒 The principal ordered the account in your report {number} locked.",
                                            number=inc.number), actor=person)
    if not it_team:
        return [Reply(ctx.t("The order is recorded, but nobody in the IT team is in the staff list. Please tell "
                            "them yourself."))]
    return [Reply(ctx.tn("🔒 Recorded. {n} person of the IT team was told to lock the account.",
                         "🔒 Recorded. {n} people of the IT team were told to lock the account.", len(it_team)))]


def footage_step(ctx: Ctx, inc: Incident) -> Step:
    """🎥: the footage workflow, pre-filled with the camera and the time (5 minutes earlier when the
    reporter did not say when it happened)."""
    if inc.camera_id is None:
        return Step.stay(Reply(ctx.t("No camera is recorded for this incident.")))
    when = inc.occurred_at or (inc.created_at - timedelta(minutes=5))
    local = when.astimezone(ctx.tr.tz)
    ctx.audit("incident.footage_requested", f"incident:{inc.id}", camera=inc.camera_id)
    return Step.start_flow("footage", seed={"camera_id": inc.camera_id, "date": local.date().isoformat(),
                                            "time": local.strftime("%H:%M")})


def make_urgent(ctx: Ctx, inc: Incident) -> list[Reply]:
    """The reporter (or BGH) makes a report urgent: it goes out at once, BGH included."""
    person = ctx.person
    assert person is not None
    if person.id != inc.reporter_id and not is_bgh(person):
        return refuse(ctx, inc, "urgent", "not_reporter")
    res = ctx.session.execute(
        update(Incident).where(col(Incident.id) == inc.id, col(Incident.urgent).is_(False),
                               col(Incident.status) != IncidentStatus.RESOLVED)
        .values(urgent=True, updated_at=ctx.now).execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        ctx.session.expire_all()
        ctx.session.refresh(inc)
        if inc.status == IncidentStatus.RESOLVED:
            return [already_taken(ctx, inc)]
        return [Reply(ctx.t("Incident {number} is already urgent.", number=inc.number))]
    ctx.session.refresh(inc)
    school = ctx.session.get(School, inc.school_id)
    assert school is not None
    reporter = ctx.session.get(Person, inc.reporter_id)
    cam = ctx.session.get(Camera, inc.camera_id) if inc.camera_id else None
    wanted = route(ctx.session, school, kind=inc.kind, urgent=True, reporter=reporter, camera=cam)
    if inc.cards_sent_at is None:  # held for the morning: everyone gets it now
        people = [p for p in (ctx.session.get(Person, pid) for pid in inc.recipient_ids or []) if p is not None]
        people += [p for p in wanted if all(p.id != q.id for q in people)]
        deliver(ctx, inc, people)
    else:
        people = [p for p in wanted if p.id not in (inc.recipient_ids or [])]
        refresh_cards(ctx, inc)
        deliver(ctx, inc, people, prefix=N_("🚨 This incident is now marked urgent."))
    ctx.session.flush()
    ctx.audit("incident.made_urgent", f"incident:{inc.id}", number=inc.number, to=[p.id for p in people])
    tell_reporter(ctx, inc, lambda tr: tr.t("🚨 {name} marked your report {number} urgent.", name=person.full_name,
                                            number=inc.number), actor=person)
    return [Reply(ctx.t("🚨 Incident {number} is now urgent and went out at once.", number=inc.number))]


# -- delivery -----------------------------------------------------------------------------------------
def deliver(ctx: Ctx, inc: Incident, people: Sequence[Person], *, prefix: str | None = None) -> int:
    """Send the first cards (with the attachments) now; returns how many were reachable."""
    add_recipients(inc, people)  # first: the cards' buttons depend on who may act
    sent = 0
    for p in people:
        if send_card(ctx, inc, p, prefix=prefix, with_files=True):
            sent += 1
    if inc.cards_sent_at is None:
        inc.cards_sent_at = ctx.now
    ctx.session.add(inc)
    return sent


# -- escalation (called by the calendar rules in bot/flows/incidents/report.py) ------------------------------
def _targets(session: Session, inc: Incident, level: int, today: date) -> list[Person]:
    """Level 1: the principal (and the vice principal standing in, if a delegation is active);
    level 2: all of BGH."""
    if level >= 2:
        return _bgh(session, inc.school_id)
    from bot.engine.approvals import active_delegation

    people = principals(session, inc.school_id)
    d = active_delegation(session, school_id=inc.school_id, on=today)
    deputy = session.get(Person, d.delegate_id) if d is not None else None
    if deputy is not None and deputy.is_active and all(deputy.id != p.id for p in people):
        people.append(deputy)
    return people


def escalation_tick(run: RuleRun, *, urgent: bool) -> None:
    """One school's open incidents of one urgency: deliver held cards, then escalate what waited
    too long, one level at a time."""
    ctx = run.ctx
    school = run.school
    c = IncidentSettings.of(school)
    step = timedelta(minutes=c.urgent_escalate_minutes) if urgent else timedelta(hours=c.normal_escalate_hours)
    if not urgent and run.quiet_now():
        run.deferred = True
        return
    rows = ctx.session.exec(select(Incident).where(
        Incident.school_id == school.id, col(Incident.urgent).is_(urgent),
        col(Incident.status) != IncidentStatus.RESOLVED).order_by(col(Incident.id))).all()
    for inc in rows:
        if inc.cards_sent_at is None:
            _release_held(run, inc)
            continue
        if inc.status != IncidentStatus.OPEN or inc.escalation_level >= 2:
            continue
        base = inc.escalated_at or inc.cards_sent_at
        if ctx.now - base < step:
            continue
        _escalate(run, inc, inc.escalation_level + 1, urgent)


def _escalate(run: RuleRun, inc: Incident, level: int, urgent: bool) -> None:
    """Claim the step (conditional update: once, whatever restarts happen), then send the cards
    and tell the reporter (each notice under its own key)."""
    ctx = run.ctx
    res = ctx.session.execute(
        update(Incident).where(col(Incident.id) == inc.id, col(Incident.escalation_level) == level - 1,
                               col(Incident.status) == IncidentStatus.OPEN)
        .values(escalation_level=level, escalated_at=ctx.now)
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return
    ctx.session.refresh(inc)
    targets = _targets(ctx.session, inc, level, ctx.today())
    add_recipients(inc, targets)
    ctx.session.add(inc)
    ctx.session.flush()
    prefix = (N_("⚠️ Escalated to you: nobody has acknowledged this incident yet.") if level == 1
              else N_("⚠️ Escalated to all of BGH: nobody has acknowledged this incident yet."))
    for p in targets:
        if destinations(ctx.session, p):
            run.notify(p, card_maker(ctx.session, inc, p, prefix), key=f"incident:{inc.id}:esc{level}", urgent=urgent)
        else:  # not linked yet: the card as it is then, when they link
            waiting.keep(ctx, p, CARD, inc.id, prefix=prefix)
    ctx.audit("incident.escalated", f"incident:{inc.id}", number=inc.number, level=level,
              to=[p.id for p in targets])
    refresh_cards(ctx, inc)
    reporter = ctx.session.get(Person, inc.reporter_id)
    if reporter is None:
        return

    def tell(tr: Translator) -> Reply:
        if level == 1:
            return Reply(tr.t("⚠️ Nobody has acknowledged your report {number} yet; it was passed to the principal.",
                              number=inc.number))
        return Reply(tr.t("⚠️ Nobody has acknowledged your report {number} yet; it was passed to all of BGH.",
                          number=inc.number))

    run.notify(reporter, tell, key=f"incident:{inc.id}:esc{level}:reporter", urgent=urgent)


def _release_held(run: RuleRun, inc: Incident) -> None:
    """A normal report made during quiet hours: its cards go out now (each once, by key)."""
    ctx = run.ctx
    res = ctx.session.execute(
        update(Incident).where(col(Incident.id) == inc.id, col(Incident.cards_sent_at).is_(None))
        .values(cards_sent_at=ctx.now).execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return
    ctx.session.refresh(inc)
    people = [p for p in (ctx.session.get(Person, pid) for pid in inc.recipient_ids or []) if p is not None]
    for p in people:
        if destinations(ctx.session, p):
            run.notify(p, card_maker(ctx.session, inc, p), key=f"incident:{inc.id}:card")
        else:  # not linked yet: the card, with the attachments, when they link
            waiting.keep(ctx, p, CARD, inc.id)
    ctx.audit("incident.delivered", f"incident:{inc.id}", number=inc.number, to=[p.id for p in people],
              held=True)


LINKED_PREFIX = N_("📬 This incident report was waiting for you to link your account.")


def deliver_waiting(ctx: Ctx, person: Person) -> int:
    """Person-linked hook: the incident cards kept for ``person`` (not linked when they were sent),
    with the attachments, as the incidents stand now — each once (:mod:`bot.engine.waiting`); those
    resolved meanwhile are dropped. Returns how many were sent."""
    sent: list[str] = []
    for ref, prefix in waiting.claim(ctx, person, CARD):
        inc = ctx.session.get(Incident, int(ref)) if parse_id(ref) is not None else None
        if inc is None or inc.status == IncidentStatus.RESOLVED or not may_view(person, inc):
            continue
        if send_card(ctx, inc, person, prefix=prefix or LINKED_PREFIX, with_files=True):
            sent.append(inc.number)
    if sent:
        ctx.audit("incident.delivered_on_link", f"person:{person.id}", incidents=sent)
    return len(sent)


# -- lists ----------------------------------------------------------------------------------------
LIST_LIMIT = 15


def list_line(session: Session, tr: Translator, inc: Incident, now: datetime, *, with_age: bool) -> str:
    urgent = "🚨 " if inc.urgent else ""
    place = f" · {inc.place}" if inc.place else ""
    head = f"<b>{inc.number}</b> {urgent}{ICONS.get(inc.kind, '📝')} {tr.t(KINDS.get(inc.kind, KINDS['other']))}"
    from bot.i18n import escape

    line = head + escape(place)
    if with_age:
        return line + "\n   " + tr.t("open for {age} · {status}", age=age_text(tr, now - inc.created_at),
                                      status=status_line(session, tr, inc))
    return line + "\n   " + tr.t("{time} · {status}", time=tr.datetime(inc.created_at),
                                  status=status_line(session, tr, inc))


def my_reports(ctx: Ctx) -> Step:
    """``/suco_cuatoi``: one's own reports, newest first."""
    person = ctx.person
    assert person is not None
    rows = list(ctx.session.exec(select(Incident).where(Incident.school_id == person.school_id,
                                                        Incident.reporter_id == person.id)
                                 .order_by(col(Incident.created_at).desc(), col(Incident.id).desc())
                                 .limit(LIST_LIMIT)))
    if not rows:
        return Step.stay(Reply(ctx.t("You have not reported any incident yet. Type /suco to report one.")))
    lines = [ctx.t("<b>Your reports</b> (newest first):")]
    lines += [list_line(ctx.session, ctx.tr, inc, ctx.now, with_age=False) for inc in rows]
    buttons = [Button(inc.number, payload(inc.id or 0, "show")) for inc in rows[:8]]
    return Step.stay(Reply("\n".join(lines), buttons=keyboard(*buttons, per_row=2)))


def open_incidents(ctx: Ctx) -> Step:
    """``/suco_dangmo``: open incidents with their age — all of them for BGH, else those one owns or
    was sent."""
    person = ctx.person
    assert person is not None
    rows = list(ctx.session.exec(select(Incident).where(Incident.school_id == person.school_id,
                                                        col(Incident.status) != IncidentStatus.RESOLVED)
                                 .order_by(col(Incident.created_at), col(Incident.id))))
    if not is_bgh(person):
        rows = [i for i in rows if i.owner_id == person.id or person.id in (i.recipient_ids or [])]
    if not rows:
        return Step.stay(Reply(ctx.t("No open incident is waiting for you. 👍")))
    lines = [ctx.tn("<b>{n} open incident</b> (oldest first):", "<b>{n} open incidents</b> (oldest first):",
                    len(rows))]
    lines += [list_line(ctx.session, ctx.tr, inc, ctx.now, with_age=True) for inc in rows[:LIST_LIMIT]]
    if len(rows) > LIST_LIMIT:
        lines.append(ctx.t("…and {n} more.", n=len(rows) - LIST_LIMIT))
    buttons = [Button(inc.number, payload(inc.id or 0, "show")) for inc in rows[:8]]
    return Step.stay(Reply("\n".join(lines), buttons=keyboard(*buttons, per_row=2)))


# -- demo data ----------------------------------------------------------------------------------------
def demo_seed(session: Session, school: School) -> None:
    """Two incidents for the demo school (idempotent: nothing is added when it already has some):
    a resolved security report from the guard and an open equipment report from a teacher."""
    assert school.id is not None
    if session.exec(select(Incident.id).where(Incident.school_id == school.id)).first() is not None:
        return
    from datetime import UTC

    guard = next(iter(people_with_role(session, school_id=school.id, role=Role.GUARD)), None)
    teacher = next(iter(people_with_role(session, school_id=school.id, role=Role.TEACHER)), None)
    now = datetime.now(UTC)
    samples = [
        (guard, "security", False, "Cổng phụ", "Cổng phụ không khóa lúc đi tuần 22h; đã khóa lại, không mất gì.",
         now - timedelta(days=2), True),
        (teacher, "equipment", False, "Phòng học", "Máy chiếu phòng 2A không lên hình.", now - timedelta(hours=3),
         False),
    ]
    for reporter, kind, urgent, place, text, at, done in samples:
        if reporter is None or reporter.id is None:
            continue
        year = at.astimezone(ZoneInfo("Asia/Ho_Chi_Minh")).year
        seq = allocate_number(session, school_id=school.id, year=year)
        inc = Incident(school_id=school.id, year=year, seq=seq, number=format_number(year, seq),
                       reporter_id=reporter.id, kind=kind, urgent=urgent, place=place, description=text,
                       created_at=at, updated_at=at, cards_sent_at=at)
        people = route(session, school, kind=kind, urgent=urgent, reporter=reporter, camera=None)
        add_recipients(inc, people)
        if done and people:
            inc.status, inc.owner_id, inc.acknowledged_at = IncidentStatus.RESOLVED, people[0].id, at
            inc.resolved_by, inc.resolved_at = people[0].id, at + timedelta(minutes=20)
            inc.resolution_note = "Đã kiểm tra, khóa cổng và ghi sổ trực."
        session.add(inc)
    session.flush()


__all__ = [
    "CARD", "DEFAULTS", "IT_KINDS", "IncidentSettings", "KINDS", "PREFIX", "acknowledge", "allocate_number", "card", "card_text",
    "conf", "deliver", "deliver_waiting", "demo_seed", "escalation_tick", "format_number", "group_of", "may_act", "may_resolve", "may_view",
    "make_urgent", "my_reports", "open_incidents", "order_lock", "parse_payload", "pass_up", "refresh_cards", "resolve", "route",
]
