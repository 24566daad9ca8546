"""``/hoso`` — see one's own record and correct one's unit (tổ), e-mail and language.

```mermaid
stateDiagram-v2
    [*] --> menu: /hoso
    menu --> unit: Sửa tổ
    menu --> email: Sửa email
    menu --> lang: Ngôn ngữ
    unit --> menu: chosen or typed
    email --> menu: valid address
    lang --> menu: chosen
    menu --> [*]: Xong
```
"""

from __future__ import annotations

from bot.core import Ctx, Flow, Inbound, Reply, Step, Workflow, choice, choice_value, keyboard
from bot.handlers.menu import roles_text
from bot.i18n import N_
from bot.text import clean, display_phone, normalize_email, parse_id
from storage.people import school_units

MAX_UNIT = 120


def _card(ctx: Ctx, note: str | None = None) -> Reply:
    p = ctx.person
    assert p is not None
    lines = []
    if note:
        lines += [note, ""]
    lines += [
        ctx.t("<b>Your profile</b>"),
        ctx.t("Name: {name}", name=p.full_name),
        ctx.t("Role: {roles}", roles=roles_text(ctx, p)),
        ctx.t("Unit: {unit}", unit=p.unit or ctx.t("(not set)")),
        ctx.t("E-mail: {email}", email=p.email or ctx.t("(not set)")),
        ctx.t("Phone: {phone}", phone=display_phone(p.phone) or ctx.t("(not set)")),
        ctx.t("Language: {language}", language=ctx.t("Vietnamese") if p.locale == "vi" else ctx.t("English")),
    ]
    buttons = keyboard(
        choice(ctx.t("✏️ Change unit"), "unit"), choice(ctx.t("✏️ Change e-mail"), "email"),
        choice(ctx.t("🌐 Language"), "lang"), choice(ctx.t("✅ Done"), "done"), per_row=2)
    return Reply("\n".join(lines), buttons=buttons)


def start(ctx: Ctx) -> Step:
    """Show the record with what can be changed."""
    return Step.goto("menu", _card(ctx))


def menu(ctx: Ctx, msg: Inbound) -> Step:
    """Pick what to change, or finish."""
    value = choice_value(msg)
    if value == "unit":
        assert ctx.school is not None
        units = school_units(ctx.session, school=ctx.school)[:20]
        ctx.data["units"] = units
        buttons = keyboard(*[choice(u, f"u{i}") for i, u in enumerate(units)], per_row=2)
        return Step.goto("unit", Reply(ctx.t("Choose your unit, or type its name:"), buttons=buttons))
    if value == "email":
        return Step.goto("email", Reply(ctx.t("Send your e-mail address (for example vannt@school.edu.vn):")))
    if value == "lang":
        return Step.goto("lang", Reply(ctx.t("Choose a language:"), buttons=keyboard(
            choice("Tiếng Việt", "vi"), choice("English", "en"), per_row=2)))
    if value == "done":
        return Step.done(Reply(ctx.t("Your profile is saved.")))
    return Step.stay(Reply(ctx.t("Please choose one of the buttons, or type /huy to stop.")), _card(ctx))


def unit(ctx: Ctx, msg: Inbound) -> Step:
    """Set the unit from a button or typed text."""
    assert ctx.person is not None
    value = choice_value(msg)
    units: list[str] = ctx.data.get("units", [])
    new: str | None = None
    index = parse_id(value[1:]) if value and value.startswith("u") else None
    if index is not None and index < len(units):
        new = units[index]
    elif msg.text:
        new = clean(msg.text)
    if not new or len(new) > MAX_UNIT:
        return Step.stay(Reply(ctx.t("Please type the unit's name (at most {max} characters).", max=MAX_UNIT)))
    old = ctx.person.unit
    ctx.person.unit = new
    ctx.person.updated_at = ctx.now
    ctx.session.add(ctx.person)
    ctx.audit("profile.unit_changed", f"person:{ctx.person.id}", old=old, new=new)
    return Step.goto("menu", _card(ctx, ctx.t("Your unit is now {unit}.", unit=new)))


def email(ctx: Ctx, msg: Inbound) -> Step:
    """Set the e-mail address after checking its form."""
    assert ctx.person is not None
    address = normalize_email(msg.text)
    if address is None:
        return Step.stay(Reply(ctx.t("That does not look like an e-mail address. Please send it again, "
                                     "for example vannt@school.edu.vn.")))
    old = ctx.person.email
    ctx.person.email = address
    ctx.person.updated_at = ctx.now
    ctx.session.add(ctx.person)
    ctx.audit("profile.email_changed", f"person:{ctx.person.id}", old=old, new=address)
    return Step.goto("menu", _card(ctx, ctx.t("Your e-mail is now {email}.", email=address)))


def lang(ctx: Ctx, msg: Inbound) -> Step:
    """Switch the language of every message this person sees."""
    assert ctx.person is not None
    value = choice_value(msg)
    if value not in ("vi", "en"):
        return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))
    ctx.person.locale = value
    ctx.session.add(ctx.person)
    ctx.tr = ctx.translator_for(ctx.person)
    return Step.goto("menu", _card(ctx, ctx.t("Language changed.")))


FLOW = Flow(
    name="profile",
    command="hoso",
    title=N_("My profile"),
    description=N_("See and correct your unit, e-mail and language"),
    icon="👤",
    start=start,
    states={"menu": menu, "unit": unit, "email": email, "lang": lang},
    order=90,
)

WORKFLOW = Workflow(name=FLOW.name, title=FLOW.title, flows=(FLOW,))
