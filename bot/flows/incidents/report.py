"""``/suco`` — report an incident from the phone (seeds 000/001 Điều 7; 002 Điều 7.2, 11.4.c, 13,
19.3; 004 Điều 7.6, 8.1, 8.6): type (IT-security subtypes included) → urgency → place (the
school's areas as buttons, typed, or a shared location) → description (text or a voice note) →
photos / videos (several, optional) → sent to the people the school routes it to.

The bot asks only what is still missing, so the same steps serve the **quick path** for guards: a
photo with a caption, a video or a voice note sent while no workflow is open starts a report with
the caption as description (the place and “khẩn cấp” are recognised in it) and asks for the rest.
Photos, videos, voice notes and a location are accepted at every step.

Everything after the report — cards, acknowledgement, escalation, passing up, lists — is in
:mod:`bot.flows.incidents.service`; the outage notices are ``bot/flows/incidents/outage.py``.

```mermaid
stateDiagram-v2
    [*] --> kind: /suco (or a guard's photo / voice note)
    kind --> account: account misuse
    kind --> urgency
    account --> urgency
    urgency --> camera: camera damaged / covered
    camera --> time: a camera chosen
    camera --> description: “not known”
    time --> description
    urgency --> place: security, equipment, other
    urgency --> description: IT security (no place needed)
    place --> description
    description --> confirm: text or voice note
    confirm --> confirm: more photos / videos, text added, “urgent”
    confirm --> [*]: ✅ Send report (cards to the routed people; held till 06:30 if normal at night)
```
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from sqlmodel import col, select

from bot.core import (
    Button,
    Ctx,
    FileRef,
    Flow,
    Handler,
    Inbound,
    Reply,
    Step,
    choice,
    choice_value,
    destinations,
    keyboard,
)
from bot.engine.reminders import Continuous, Rule, in_quiet_hours
from bot.flows.footage.models import Camera
from bot.flows.incidents import service as incidents
from bot.flows.incidents.models import Incident, IncidentAttachment, IncidentStatus
from bot.flows.incidents.service import IT_KINDS, KINDS
from bot.flows.incidents.settings import IncidentSettings
from bot.i18n import N_
from bot.roles import Role
from bot.text import clean, fold, nfc, parse_date, parse_id, parse_time
from storage.models import Person

MAX_DESCRIPTION = 2000
MAX_PLACE = 200
MAX_ACCOUNT = 200
MAX_NOTE = 1000
MAX_AREA_BUTTONS = 16
MEDIA_KINDS = ("photo", "video", "voice", "audio", "video_note")

#: Words (folded) that name a type when people type instead of tapping.
KIND_WORDS: dict[str, tuple[str, ...]] = {
    "security": ("an ninh", "trat tu", "dot nhap", "trom"),
    "camera": ("camera",),
    "it_malware": ("virus", "vi rut", "ma doc", "malware"),
    "it_phishing": ("lua dao", "phishing", "gia mao"),
    "it_account": ("tai khoan",),
    "it_data_loss": ("mat du lieu",),
    "equipment": ("thiet bi",),
    "other": ("khac",),
}


# -- attachments and location, at any step ------------------------------------------------------------
def too_big_reply(ctx: Ctx, f: FileRef) -> Reply:
    """A clear answer when the channel could not hand us a file (Telegram: over 20 MB)."""
    size = ctx.tr.number(round(f.size / (1024 * 1024), 1)) if f.size else "?"
    what = {"photo": ctx.t("photo"), "video": ctx.t("video"), "video_note": ctx.t("video"),
            "voice": ctx.t("voice note"), "audio": ctx.t("recording")}.get(f.kind, ctx.t("file"))
    if ctx.inbound.channel == "telegram":
        return Reply(ctx.t("⚠️ That {what} is {size} MB, but Telegram lets me receive files of at most {max} MB, so "
                           "it was not saved. Please send a shorter clip (or record at a lower quality), or hand "
                           "the file to IT.", what=what, size=size, max=ctx.settings.telegram_max_download_mb))
    return Reply(ctx.t("⚠️ That {what} is too large for me to receive ({size} MB), so it was not saved. Please "
                       "send a shorter clip, or hand the file to IT.", what=what, size=size))


def absorb(ctx: Ctx, data: dict[str, Any], msg: Inbound) -> list[Reply]:
    """Keep the photos, videos and voice notes (up to the school's limit) and a shared location in
    ``data``; files that could not be fetched get a clear reply."""
    out: list[Reply] = []
    # A new list, never the one loaded from the conversation: an in-place change of a nested JSON
    # value would not be seen as a change, and the files would be lost at the next step.
    files: list[dict[str, Any]] = list(data.get("files") or [])
    data["files"] = files
    limit = IncidentSettings.of(ctx.school).max_attachments
    for f in msg.files:
        if f.error == "too_big":
            out.append(too_big_reply(ctx, f))
            continue
        if f.error or not f.path:
            out.append(Reply(ctx.t("⚠️ I could not receive that file. Please send it again.")))
            continue
        if len(files) >= limit:
            out.append(Reply(ctx.t("A report holds at most {max} attachments; this one was not added.", max=limit)))
            continue
        files.append({"kind": f.kind, "path": f.path, "mime": f.mime, "size": f.size, "sha256": f.sha256,
                      "file_name": f.file_name})
        if f.kind in ("voice", "audio"):
            data["voice"] = True
    if msg.location is not None:
        data["lat"], data["lon"] = float(msg.location[0]), float(msg.location[1])
    return out


def _infer(ctx: Ctx, data: dict[str, Any], text: str) -> None:
    """From a guard's caption: “khẩn cấp” means urgent; a known area or camera name is the place."""
    folded = fold(text)
    if "khẩn" in nfc(text).lower() or "khan cap" in folded:
        data["urgent"] = True
    areas = sorted(IncidentSettings.of(ctx.school).areas, key=len, reverse=True)
    for area in areas:
        if fold(area) and fold(area) in folded:
            data["place"] = area
            break
    _match_camera(ctx, data)


def _cameras(ctx: Ctx) -> list[Camera]:
    assert ctx.person is not None
    return list(ctx.session.exec(select(Camera).where(Camera.school_id == ctx.person.school_id,
                                                      Camera.status == "active").order_by(col(Camera.name))))


def _match_camera(ctx: Ctx, data: dict[str, Any]) -> None:
    """A place that is exactly one camera's name links that camera (for “Trích xuất camera”)."""
    if data.get("camera_id") or not data.get("place"):
        return
    found = [c for c in _cameras(ctx) if fold(c.name) == fold(str(data["place"]))]
    if len(found) == 1:
        data["camera_id"] = found[0].id


# -- what to ask next -------------------------------------------------------------------------------
def _kind_prompt(ctx: Ctx, lists: bool = True) -> Reply:
    buttons = [choice(f"{incidents.ICONS[k]} {ctx.t(label)}", k) for k, label in KINDS.items()]
    rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
    if lists:
        rows.append([choice(ctx.t("📋 My reports"), "mine"), choice(ctx.t("📂 Open incidents"), "open")])
    return Reply(ctx.t("🚨 <b>Report an incident</b>\nWhat happened? Choose the type:"), buttons=keyboard(*rows))


def _ask_next(ctx: Ctx, *pre: Reply) -> Step:
    """Go to the first thing still missing (the quick path skips what the caption gave)."""
    d = ctx.data
    kind = d.get("kind")
    if kind not in KINDS:
        return Step.goto("kind", *pre, _kind_prompt(ctx, lists=not d.get("quick")))
    if kind == "it_account" and "account" not in d:
        return Step.goto("account", *pre, Reply(
            ctx.t("Which account is misused? For example: official e-mail vannt@…, the school management "
                  "software, the sector database."), buttons=keyboard(choice(ctx.t("Not known"), "none"))))
    if "urgent" not in d:
        return Step.goto("urgency", *pre, Reply(ctx.t("How urgent is it?"), buttons=keyboard(
            choice(ctx.t("🚨 Urgent"), "urgent"), choice(ctx.t("Normal"), "normal"), per_row=2)))
    if kind == "camera" and "camera_id" not in d:
        cams = _cameras(ctx)
        if cams:
            buttons = [choice(c.name, f"cam{c.id}") for c in cams[:12]] + [choice(ctx.t("Not known"), "none")]
            return Step.goto("camera", *pre, Reply(ctx.t("Which camera? Tap it, or type part of its name."),
                                                   buttons=keyboard(*buttons, per_row=2)))
        d["camera_id"] = None
    if kind == "camera" and d.get("camera_id") and "occurred_at" not in d:
        return Step.goto("time", *pre, Reply(
            ctx.t("When did you notice it? Tap “Just now”, or type the time (8h30, or 21/11 8h30)."),
            buttons=keyboard(choice(ctx.t("Just now"), "now"))))
    if kind not in IT_KINDS and not d.get("place") and "lat" not in d:
        areas = IncidentSettings.of(ctx.school).areas[:MAX_AREA_BUTTONS]
        return Step.goto("place", *pre, Reply(
            ctx.t("Where? Tap a place, type it, or share your location (📎 → Location)."),
            buttons=keyboard(*[choice(a, f"a{i}") for i, a in enumerate(areas)], per_row=2)))
    if not d.get("description") and not d.get("voice"):
        return Step.goto("description", *pre, Reply(
            ctx.t("Describe what happened: type it, or send a voice note.")))
    return Step.goto("confirm", *pre, _summary(ctx))


def _quiet(ctx: Ctx) -> bool:
    return in_quiet_hours(ctx.settings.quiet_window(), ctx.local_now().time())


def _held(ctx: Ctx) -> bool:
    """A normal report made during quiet hours waits for the morning (urgent ones never wait)."""
    return (not ctx.data.get("urgent") and IncidentSettings.of(ctx.school).hold_normal_at_night
            and _quiet(ctx))


def _recipients(ctx: Ctx) -> list[Person]:
    assert ctx.school is not None
    cam = ctx.session.get(Camera, ctx.data["camera_id"]) if ctx.data.get("camera_id") else None
    return incidents.route(ctx.session, ctx.school, kind=ctx.data["kind"], urgent=bool(ctx.data.get("urgent")),
                           reporter=ctx.person, camera=cam)


def _names(ctx: Ctx, people: list[Person], limit: int = 6) -> str:
    names = [incidents.person_label(ctx.tr, p) for p in people[:limit]]
    if len(people) > limit:
        names.append(ctx.t("and {n} more", n=len(people) - limit))
    return ", ".join(names) or ctx.t("the principal")


def _summary(ctx: Ctx, note: str | None = None) -> Reply:
    d = ctx.data
    lines = [note, ""] if note else []
    lines.append(ctx.t("<b>Check your report</b>"))
    lines.append(ctx.t("Type: {kind}", kind=incidents.kind_label(ctx.tr, d["kind"])))
    lines.append(ctx.t("Urgency: {urgency}", urgency=ctx.t("🚨 Urgent") if d.get("urgent") else ctx.t("Normal")))
    if d.get("account"):
        lines.append(ctx.t("Account concerned: {account}", account=d["account"]))
    cam = ctx.session.get(Camera, d["camera_id"]) if d.get("camera_id") else None
    if cam is not None:
        lines.append(ctx.t("Camera: {name}", name=cam.name))
    if d.get("occurred_at"):
        lines.append(ctx.t("Happened at: {time}", time=ctx.tr.datetime(datetime.fromisoformat(d["occurred_at"]))))
    if d.get("place"):
        lines.append(ctx.t("Place: {place}", place=d["place"]))
    if "lat" in d:
        lines.append(ctx.t("📍 Location shared"))
    if d.get("description"):
        lines.append(ctx.t("Description: {text}", text=d["description"]))
    elif d.get("voice"):
        lines.append(ctx.t("Description: (voice note attached)"))
    n = len(d.get("files") or [])
    if n:
        lines.append(ctx.tn("📎 {n} attachment", "📎 {n} attachments", n))
    lines.append(ctx.t("It goes to: {names}", names=_names(ctx, _recipients(ctx))))
    lines.append("")
    buttons = [choice(ctx.t("✅ Send report"), "send")]
    if _held(ctx):
        q = ctx.settings.quiet_window()
        lines.append(ctx.t("🌙 It is quiet hours: a normal report reaches them at {time}. If it cannot wait, tap "
                           "“🚨 Make it urgent”.", time=ctx.tr.time(q[1]) if q else ""))
        buttons.append(choice(ctx.t("🚨 Make it urgent"), "urgent"))
    lines.append(ctx.t("Photos or videos? Send them now (several are fine), then tap “✅ Send report”."))
    buttons.append(choice(ctx.t("Cancel"), "cancel"))
    return Reply("\n".join(lines), buttons=keyboard(*buttons, per_row=2))


# -- steps ----------------------------------------------------------------------------------------
def start(ctx: Ctx) -> Step:
    """Ask the type (or, on the quick path, whatever the photo / voice note did not say)."""
    if ctx.data.get("quick"):
        return _ask_next(ctx, Reply(ctx.t("🚨 A new incident report with what you sent. Just a few questions "
                                          "(type /huy to stop).")))
    return _ask_next(ctx)


def _kind_from_text(text: str | None) -> str | None:
    folded = fold(text or "")
    if not folded:
        return None
    found = {k for k, words in KIND_WORDS.items() if any(w in folded for w in words)}
    if "camera" in found and len(found) > 1:
        found.discard("camera")
    return found.pop() if len(found) == 1 else None


def kind(ctx: Ctx, msg: Inbound) -> Step:
    """A type button (or a typed word such as “virus”, “an ninh”); also the two lists."""
    pre = absorb(ctx, ctx.data, msg)
    value = choice_value(msg)
    if value == "mine":
        return Step.done(*incidents.my_reports(ctx).replies)
    if value == "open":
        return Step.done(*incidents.open_incidents(ctx).replies)
    k = value if value in KINDS else _kind_from_text(msg.text)
    if k is None:
        if pre or msg.files or msg.location:
            return _ask_next(ctx, *pre)
        return Step.stay(Reply(ctx.t("Please choose one of the types.")), _kind_prompt(ctx, lists=False))
    ctx.data["kind"] = k
    return _ask_next(ctx, *pre)


def account(ctx: Ctx, msg: Inbound) -> Step:
    """The misused account, typed (or “not known”)."""
    pre = absorb(ctx, ctx.data, msg)
    if choice_value(msg) == "none":
        ctx.data["account"] = ""
        return _ask_next(ctx, *pre)
    text = clean(msg.text or "")
    if not text:
        return _ask_next(ctx, *pre)
    if len(text) > MAX_ACCOUNT:
        return Step.stay(*pre, Reply(ctx.t("Please name the account in at most {max} characters.", max=MAX_ACCOUNT)))
    ctx.data["account"] = text
    return _ask_next(ctx, *pre)


def urgency(ctx: Ctx, msg: Inbound) -> Step:
    """``Khẩn cấp`` or ``Bình thường`` (buttons, or typed)."""
    pre = absorb(ctx, ctx.data, msg)
    value = choice_value(msg)
    folded = fold(msg.text or "")
    if value == "urgent" or folded.startswith("khan"):
        ctx.data["urgent"] = True
    elif value == "normal" or folded.startswith("binh thuong"):
        ctx.data["urgent"] = False
    elif not (pre or msg.files or msg.location):
        return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))
    return _ask_next(ctx, *pre)


def camera(ctx: Ctx, msg: Inbound) -> Step:
    """The camera concerned: a button, part of its name, or “not known”."""
    pre = absorb(ctx, ctx.data, msg)
    value = choice_value(msg) or ""
    cams = _cameras(ctx)
    if value == "none":
        ctx.data["camera_id"] = None
        return _ask_next(ctx, *pre)
    found: list[Camera] = []
    if value.startswith("cam") and parse_id(value[3:]) is not None:
        found = [c for c in cams if c.id == int(value[3:])]
    elif msg.text:
        q = fold(msg.text)
        found = [c for c in cams if q and (q in fold(c.name) or q == fold(c.code))]
    if len(found) != 1:
        if not (msg.text or value):
            return _ask_next(ctx, *pre)
        if found:
            return Step.stay(*pre, Reply(ctx.t("Several cameras match. Which one?"), buttons=keyboard(
                *[choice(c.name, f"cam{c.id}") for c in found[:12]], per_row=2)))
        return Step.stay(*pre, Reply(ctx.t("I found no camera by that name. Tap one, or type another part of its "
                                           "name.")))
    ctx.data["camera_id"] = found[0].id
    ctx.data.setdefault("place", found[0].name)
    return _ask_next(ctx, *pre)


def parse_when(raw: str | None, *, today: Any, tz: Any) -> datetime | None:
    """``8h30`` (today), ``21/11 8h30``, ``8h30 21/11``, ``hôm qua 22h`` → a local datetime."""
    if not raw:
        return None
    import re

    s = fold(raw)
    day = today
    m = re.search(r"\d{1,2}\s*[/-]\s*\d{1,2}(?:\s*[/-]\s*\d{2,4})?", s)
    if m:
        d = parse_date(m.group(0), today=today)
        if d is None:
            return None
        day = d
        s = (s[:m.start()] + " " + s[m.end():]).strip()
    for word, shift in (("hom qua", -1), ("hom nay", 0), ("ngay mai", 1)):
        if word in s:
            day = today + timedelta(days=shift)
            s = s.replace(word, " ").strip()
    for word in ("luc", "ngay", "tu", "den", "vao"):
        s = re.sub(rf"\b{word}\b", " ", s).strip()
    t = parse_time(s)
    if t is None:
        return None
    return datetime.combine(day, time(t.hour, t.minute), tzinfo=tz)


def time_(ctx: Ctx, msg: Inbound) -> Step:
    """When it was noticed: “Just now”, ``8h30`` (today) or ``21/11 8h30``; not in the future."""
    pre = absorb(ctx, ctx.data, msg)
    if choice_value(msg) == "now":
        ctx.data["occurred_at"] = ctx.now.isoformat()
        return _ask_next(ctx, *pre)
    if not msg.text:
        return _ask_next(ctx, *pre)
    when = parse_when(msg.text, today=ctx.today(), tz=ctx.tr.tz)
    if when is None:
        return Step.stay(*pre, Reply(ctx.t("I could not read that time. Type it like 8h30, or 21/11 8h30.")))
    if when > ctx.local_now() + timedelta(minutes=1):
        return Step.stay(*pre, Reply(ctx.t("That time has not come yet. When did you notice it?")))
    ctx.data["occurred_at"] = when.isoformat()
    return _ask_next(ctx, *pre)


def place(ctx: Ctx, msg: Inbound) -> Step:
    """An area button, a typed place, or a shared location."""
    pre = absorb(ctx, ctx.data, msg)
    value = choice_value(msg) or ""
    areas = IncidentSettings.of(ctx.school).areas[:MAX_AREA_BUTTONS]
    if value.startswith("a") and parse_id(value[1:]) is not None and int(value[1:]) < len(areas):
        ctx.data["place"] = areas[int(value[1:])]
    elif msg.text:
        text = clean(msg.text)
        if len(text) > MAX_PLACE:
            return Step.stay(*pre, Reply(ctx.t("Please name the place in at most {max} characters.", max=MAX_PLACE)))
        known = [a for a in areas if fold(a) == fold(text)]
        ctx.data["place"] = known[0] if known else text
    elif value:
        return Step.stay(*pre, Reply(ctx.t("That button is no longer valid. Tap a place or type it.")))
    _match_camera(ctx, ctx.data)
    return _ask_next(ctx, *pre)


def description(ctx: Ctx, msg: Inbound) -> Step:
    """Text (up to 2000 characters) or a voice note (kept as an attachment)."""
    pre = absorb(ctx, ctx.data, msg)
    text = clean(msg.text or "")
    if text:
        if len(text) > MAX_DESCRIPTION:
            return Step.stay(*pre, Reply(ctx.t("Please keep the description under {max} characters.",
                                               max=MAX_DESCRIPTION)))
        ctx.data["description"] = text
    return _ask_next(ctx, *pre)


def confirm(ctx: Ctx, msg: Inbound) -> Step:
    """✅ sends; more photos / videos are added; typed text is added to the description."""
    before = len(ctx.data.get("files") or [])
    pre = absorb(ctx, ctx.data, msg)
    value = choice_value(msg)
    if value == "cancel":
        return Step.done(Reply(ctx.t("Cancelled. Nothing was sent.")))
    if value == "urgent":
        ctx.data["urgent"] = True
        return Step.stay(*pre, _summary(ctx, ctx.t("🚨 Marked urgent: it goes out at once.")))
    if value == "send":
        return submit(ctx, *pre)
    text = clean(msg.text or "")
    if text:
        joined = (ctx.data.get("description", "") + "\n" + text).strip()
        if len(joined) > MAX_DESCRIPTION:
            return Step.stay(*pre, Reply(ctx.t("Please keep the description under {max} characters.",
                                               max=MAX_DESCRIPTION)))
        ctx.data["description"] = joined
        return Step.stay(*pre, _summary(ctx, ctx.t("Added to the description.")))
    added = len(ctx.data.get("files") or []) - before
    if added or msg.location:
        n = len(ctx.data.get("files") or [])
        return Step.stay(*pre, Reply(ctx.tn("📎 Received: {n} attachment so far. Send more, or tap “✅ Send report”.",
                                            "📎 Received: {n} attachments so far. Send more, or tap “✅ Send "
                                            "report”.", n),
                                     buttons=keyboard(choice(ctx.t("✅ Send report"), "send"),
                                                      choice(ctx.t("Cancel"), "cancel"), per_row=2)))
    if pre:
        return Step.stay(*pre)
    return Step.stay(Reply(ctx.t("Please tap “✅ Send report”, or type /huy to stop.")), _summary(ctx))


def submit(ctx: Ctx, *pre: Reply) -> Step:
    """Number it, store it with its attachments, route it and send the cards (or hold them)."""
    person, school = ctx.person, ctx.school
    assert person is not None and school is not None and person.id is not None and school.id is not None
    d = ctx.data
    year = ctx.local_now().year
    seq = incidents.allocate_number(ctx.session, school_id=school.id, year=year)
    cam = ctx.session.get(Camera, d["camera_id"]) if d.get("camera_id") else None
    inc = Incident(school_id=school.id, year=year, seq=seq, number=incidents.format_number(year, seq),
                   reporter_id=person.id, kind=d["kind"], urgent=bool(d.get("urgent")),
                   place=str(d.get("place") or "")[:MAX_PLACE], latitude=d.get("lat"), longitude=d.get("lon"),
                   camera_id=cam.id if cam is not None and cam.school_id == school.id else None,
                   occurred_at=datetime.fromisoformat(d["occurred_at"]) if d.get("occurred_at") else None,
                   account=str(d.get("account") or ""), description=str(d.get("description") or ""),
                   created_at=ctx.now, updated_at=ctx.now)
    ctx.session.add(inc)
    ctx.session.flush()
    assert inc.id is not None
    for f in d.get("files") or []:
        ctx.session.add(IncidentAttachment(incident_id=inc.id, school_id=school.id, kind=f["kind"], path=f["path"],
                                           mime=f.get("mime", "")[:100], size=int(f.get("size") or 0),
                                           sha256=f.get("sha256", ""), file_name=str(f.get("file_name", ""))[:200],
                                           added_by=person.id, created_at=ctx.now))
    ctx.session.flush()
    people = _recipients(ctx)
    held = _held(ctx)
    sent = 0
    if held:
        incidents.add_recipients(inc, people)
        ctx.session.add(inc)
    else:
        sent = incidents.deliver(ctx, inc, people)
    ctx.session.flush()
    ctx.audit("incident.reported", f"incident:{inc.id}", number=inc.number, kind=inc.kind, urgent=inc.urgent,
              to=[p.id for p in people], attachments=len(d.get("files") or []), held=held)
    buttons = []
    if held:
        buttons.append(Button(ctx.t("🚨 Make it urgent"), incidents.payload(inc.id, "urgent")))
    if incidents.footage_possible(inc):
        buttons.append(Button(ctx.t("🎥 Extract camera footage"), incidents.payload(inc.id, "cam")))
    if held:
        q = ctx.settings.quiet_window()
        text = ctx.t("✅ Report {number} is recorded. It is quiet hours, so {names} will get it at {time}. If it "
                     "cannot wait, tap “🚨 Make it urgent”.", number=inc.number, names=_names(ctx, people),
                     time=ctx.tr.time(q[1]) if q else "")
    elif sent == 0:
        text = ctx.t("⏳ Report {number} is recorded and is waiting for {names} to link their account to the "
                     "assistant: they get it as soon as they do. If it cannot wait, phone them now.",
                     number=inc.number, names=_names(ctx, people))
    elif sent < len(people):
        later = [p for p in people if not destinations(ctx.session, p)]
        text = ctx.t("✅ Report {number} was sent to {names}. {waiting} will get it as soon as they link their "
                     "account to the assistant. You will be told when someone takes it.",
                     number=inc.number, names=_names(ctx, [p for p in people if all(p.id != q.id for q in later)]),
                     waiting=_names(ctx, later))
    else:
        text = ctx.t("✅ Report {number} was sent to {names}. You will be told when someone takes it.",
                     number=inc.number, names=_names(ctx, people))
    return Step.done(*pre, Reply(text, buttons=keyboard(*buttons, per_row=1)))


# -- card actions ---------------------------------------------------------------------------------
def on_action(ctx: Ctx) -> Step:
    """``ic:<id>:<action>`` — the incident is looked up and the person checked on the server."""
    parsed = incidents.parse_payload(ctx.inbound.payload)
    if parsed is None:
        ctx.audit("incident.refused", "", reason="malformed", payload=(ctx.inbound.payload or "")[:64])
        return Step.stay(Reply(ctx.t("That button is no longer valid.")))
    inc_id, action = parsed
    inc, refusal = incidents.load(ctx, inc_id, action)
    if refusal is not None or inc is None:
        return Step.stay(*([refusal] if refusal else []))
    person = ctx.person
    assert person is not None
    if action == "ack":
        return Step.stay(*incidents.acknowledge(ctx, inc))
    if action == "done":
        if inc.status == IncidentStatus.RESOLVED:
            return Step.stay(incidents.already_taken(ctx, inc))
        if not incidents.may_resolve(person, inc):
            return Step.stay(*incidents.resolve(ctx, inc, ""))  # explains who holds it, or refuses
        return Step.start_flow("incident_resolve", seed={"incident_id": inc.id})
    if action == "up":
        if not incidents.may_act(person, inc):
            return Step.stay(*incidents.pass_up(ctx, inc, ""))  # refuses and audits
        if inc.reported_up_at is not None:
            return Step.stay(*incidents.pass_up(ctx, inc, ""))  # tells who already did
        return Step.start_flow("incident_up", seed={"incident_id": inc.id})
    if action == "cam":
        return incidents.footage_step(ctx, inc)
    if action == "lock":
        return Step.stay(*incidents.order_lock(ctx, inc))
    if action == "files":
        files = incidents.attachments(ctx.session, inc)
        if not files:
            return Step.stay(Reply(ctx.t("Incident {number} has no attachments.", number=inc.number)))
        ctx.audit("incident.files_viewed", f"incident:{inc.id}", n=len(files))
        return Step.stay(*incidents.file_replies(ctx.tr, inc, files))
    if action == "doc":
        if not (incidents.is_bgh(person) and inc.reported_up_at is not None):
            return Step.stay(*incidents.refuse(ctx, inc, "doc", "not_bgh"))
        path = incidents.write_report(ctx, inc)
        ctx.audit("incident.report_written", f"incident:{inc.id}", number=inc.number)
        return Step.stay(incidents.report_reply(ctx.tr, inc, path))
    if action == "urgent":
        return Step.stay(*incidents.make_urgent(ctx, inc))
    return Step.stay(incidents.card(ctx.session, ctx.tr, inc, person))  # "show"


# -- the note prompts -----------------------------------------------------------------------------
def _incident(ctx: Ctx) -> Incident | None:
    inc = ctx.session.get(Incident, int(ctx.data.get("incident_id", 0)))
    if inc is None or ctx.person is None or inc.school_id != ctx.person.school_id:
        return None
    return inc


def _resolve_start(ctx: Ctx) -> Step:
    """Ask how it was handled (a note is required, 001/002: the record of the handling)."""
    inc = _incident(ctx)
    number = inc.number if inc else "?"
    return Step.goto("note", Reply(ctx.t("How was incident {number} handled? Send a short note.", number=number),
                                   buttons=keyboard(choice(ctx.t("↩️ Back"), "back"))))


def _resolve_note(ctx: Ctx, msg: Inbound) -> Step:
    """Resolve with the note; every card and the reporter are updated."""
    inc = _incident(ctx)
    if inc is None:
        return Step.done(Reply(ctx.t("That incident no longer exists.")))
    if choice_value(msg) == "back":
        return Step.done(Reply(ctx.t("Incident {number} was not marked resolved.", number=inc.number)))
    note = clean(msg.text or "")
    if not note or len(note) > MAX_NOTE:
        return Step.stay(Reply(ctx.t("Please send the note as text (at most {max} characters).", max=MAX_NOTE)))
    return Step.done(*incidents.resolve(ctx, inc, note))


def _up_start(ctx: Ctx) -> Step:
    """Ask why it goes beyond the school's authority (optional)."""
    inc = _incident(ctx)
    number = inc.number if inc else "?"
    return Step.goto("note", Reply(
        ctx.t("Pass incident {number} up: the principal gets a report to the authority, ready to sign. Why is it "
              "beyond the school's authority? Send a short note, or tap “No note”.", number=number),
        buttons=keyboard(choice(ctx.t("No note"), "skip"), choice(ctx.t("↩️ Back"), "back"), per_row=2)))


def _up_note(ctx: Ctx, msg: Inbound) -> Step:
    """Pass up with the note (or none)."""
    inc = _incident(ctx)
    if inc is None:
        return Step.done(Reply(ctx.t("That incident no longer exists.")))
    value = choice_value(msg)
    if value == "back":
        return Step.done(Reply(ctx.t("Incident {number} was not passed up.", number=inc.number)))
    note = "" if value == "skip" else clean(msg.text or "")
    if value != "skip" and (not note or len(note) > MAX_NOTE):
        return Step.stay(Reply(ctx.t("Please send the note as text (at most {max} characters), or tap “No note”.",
                                     max=MAX_NOTE)))
    return Step.done(*incidents.pass_up(ctx, inc, note))


RESOLVE_FLOW = Flow(name="incident_resolve", title=N_("Resolve an incident"), start=_resolve_start,
                    states={"note": _resolve_note}, in_menu=False)
UP_FLOW = Flow(name="incident_up", title=N_("Pass an incident up"), start=_up_start,
               states={"note": _up_note}, in_menu=False)


# -- the guards' quick path: a hook on the registry's idle handling ---------------------------------
def quick_report(ctx: Ctx) -> Step | None:
    """A photo (with or without caption), a video or a voice note sent while no workflow is open,
    by someone in ``quick_roles`` (guards by default), opens a report. Anything else: None."""
    msg, person = ctx.inbound, ctx.person
    if person is None or not msg.files or ctx.school is None:
        return None
    if not person.has_role(*IncidentSettings.of(ctx.school).quick_roles):
        return None
    if not any(f.kind in MEDIA_KINDS for f in msg.files):
        return None
    data: dict[str, Any] = {"quick": True}
    pre = absorb(ctx, data, msg)
    caption = clean(msg.text or "")
    if caption:
        data["description"] = caption[:MAX_DESCRIPTION]
        _infer(ctx, data, caption)
    ctx.audit("incident.quick_started", f"person:{person.id}", files=len(data.get("files") or []))
    return Step.start_flow(FLOW.name, *pre, seed=data)


#: commands and button namespaces that are not a conversation
HANDLERS: tuple[Handler, ...] = (
    Handler(on_action, prefix=incidents.PREFIX),
    Handler(incidents.my_reports, commands=("suco_cuatoi",), description=N_("Incidents you reported"), order=21),
    Handler(incidents.open_incidents, commands=("suco_dangmo",),
            description=N_("Open incidents and how long they have waited"), order=22),
)
#: conversations started from a button or another workflow (not from the menu)
FLOWS: tuple[Flow, ...] = (RESOLVE_FLOW, UP_FLOW)


# -- escalation rules (the compliance calendar runs them at every tick) -----------------------------
def _urgent_tick(run: Any) -> None:
    incidents.escalation_tick(run, urgent=True)


def _normal_tick(run: Any) -> None:
    incidents.escalation_tick(run, urgent=False)


RULES = [
    Rule("incidents.urgent_escalation", title=N_("Urgent incidents not acknowledged: to the principal, then BGH"),
         schedule=Continuous(), fn=_urgent_tick, roles=(Role.PRINCIPAL, Role.VICE_PRINCIPAL),
         regulation="000/001 Điều 7.1", urgent=True, order=30),
    Rule("incidents.escalation", title=N_("Incidents not acknowledged: to the principal, then BGH; night reports "
                                         "in the morning"),
         schedule=Continuous(), fn=_normal_tick, roles=(Role.PRINCIPAL, Role.VICE_PRINCIPAL),
         regulation="002 Điều 13; 004 Điều 7.6", order=31),
]

FLOW = Flow(
    name="incident",
    command="suco",
    title=N_("Report an incident"),
    description=N_("Report an incident (security, camera, IT security, equipment)"),
    icon="🚨",
    start=start,
    states={"kind": kind, "account": account, "urgency": urgency, "camera": camera, "time": time_,
            "place": place, "description": description, "confirm": confirm},
    order=15,
)

__all__ = ["FLOW", "RULES", "absorb", "parse_when", "quick_report"]
