"""``/start`` and account linking: by sharing one's own phone number, or by an invite code."""

from __future__ import annotations

from dataclasses import replace

from bot.core import Ctx, Handler, Registry, Reply, Step
from bot.engine import waiting
from bot.handlers.menu import menu_reply, roles_text
from bot.i18n import N_
from bot.text import mask_phone, normalize_phone
from storage.models import School
from storage.people import active_people_by_phone, link_identity, looks_like_code, redeem_invite


def _ask_contact(ctx: Ctx, text: str) -> Reply:
    return Reply(text, ask_contact=ctx.t("📱 Share my phone number"))


def _welcome(ctx: Ctx) -> list[Reply]:
    person = ctx.person
    assert person is not None
    school = ctx.session.get(School, person.school_id)
    ctx.school = school
    text = ctx.t("Hello {name}! Your account is linked to {school} as {roles}.",
                 name=person.full_name, school=school.name if school else "", roles=roles_text(ctx, person))
    return [Reply(text, remove_keyboard=True), menu_reply(ctx)]


def _link(ctx: Ctx, person_id: int, method: str) -> list[Reply]:
    from storage.models import Person

    person = ctx.session.get(Person, person_id)
    assert person is not None
    msg = ctx.inbound
    link_identity(ctx.session, person=person, channel=msg.channel, external_id=msg.user_id,
                  chat_id=msg.chat_id, display_name=msg.display_name, now=ctx.now)
    ctx.person = person
    ctx.tr = ctx.translator_for(person)
    ctx.audit("identity.linked", f"person:{person.id}", method=method, channel_user=msg.user_id)
    welcome = _welcome(ctx)  # sets ctx.school
    # What waited for them goes out now, after the greeting: notices held for people not linked
    # (the person-seen hooks), then the approval and incident cards kept for them.
    for hook in ctx.registry.person_seen_hooks:
        hook(ctx)
    waiting.run_linked_hooks(ctx, person)
    return welcome


def _redeem(ctx: Ctx, code: str) -> Step:
    person, reason = redeem_invite(ctx.session, code=code, now=ctx.now)
    if person is None:
        ctx.audit("identity.invite_refused", "", reason=reason, channel_user=ctx.inbound.user_id)
        texts = {
            "used": ctx.t("This link code has already been used. Ask the school office for a new one."),
            "expired": ctx.t("This link code has expired. Ask the school office for a new one."),
            "inactive": ctx.t("This link code belongs to a person who is no longer active at the school."),
        }
        text = texts.get(reason, ctx.t("This link code is not valid. Check it, or share your phone number "
                                       "with the button below."))
        return Step.stay(_ask_contact(ctx, text))
    assert person.id is not None
    return Step.stay(*_link(ctx, person.id, "invite"))


def start(ctx: Ctx) -> Step:
    """``/start`` (optionally ``/start <code>`` from an invite link)."""
    code = ctx.inbound.args.strip()
    if ctx.person is not None:
        # Already linked: the greeting and the menu in one message (the contact keyboard was
        # removed when the account was linked).
        greeting, menu = _welcome(ctx)
        reply = replace(menu, text=greeting.text + "\n\n" + menu.text)
        if ctx.conversation is not None and ctx.conversation.flow:
            return Step.done(reply)
        return Step.stay(reply)
    if code:
        return _redeem(ctx, code)
    return Step.stay(_ask_contact(ctx, ctx.t(
        "Welcome to the school assistant! To begin, tap the button below to share your phone number. "
        "It is checked against the school's staff list.")))


def on_contact(ctx: Ctx) -> Step:
    """A shared contact: accepted only if it is the sender's own and the number is on the staff list."""
    msg = ctx.inbound
    contact = msg.contact
    assert contact is not None
    if ctx.person is not None:
        return Step.stay(Reply(ctx.t("Your account is already linked."), remove_keyboard=True), menu_reply(ctx))
    if msg.forwarded or contact.user_id is None or str(contact.user_id) != str(msg.user_id):
        ctx.audit("identity.contact_refused", "", reason="not_own", phone=mask_phone(normalize_phone(contact.phone)),
                  channel_user=msg.user_id)
        return Step.stay(_ask_contact(ctx, ctx.t(
            "For your safety I can only accept your own phone number. Please tap the button below "
            "instead of sending someone else's contact.")))
    phone = normalize_phone(contact.phone)
    people = active_people_by_phone(ctx.session, phone=phone) if phone else []
    if len(people) != 1:
        ctx.audit("identity.contact_refused", "", reason="unknown" if not people else "ambiguous",
                  phone=mask_phone(phone), channel_user=msg.user_id)
        if people:
            text = ctx.t("Your number is listed at more than one school. Please ask your school office for "
                         "a link code and send it here.")
        else:
            text = ctx.t("Your phone number is not on the staff list of any school using this assistant. "
                         "Please ask the school office to add you, or to give you a link code.")
        return Step.stay(Reply(text, remove_keyboard=True))
    assert people[0].id is not None
    return Step.stay(*_link(ctx, people[0].id, "contact"))


def on_unlinked(ctx: Ctx) -> Step:
    """Anything from a person who is not linked: a typed invite code links; otherwise explain."""
    text = (ctx.inbound.text or "").strip()
    if text and looks_like_code(text):
        return _redeem(ctx, text)
    return Step.stay(_ask_contact(ctx, ctx.t(
        "You are not linked to a school yet, so I cannot help with that. Tap the button below to share "
        "your phone number, or send the link code the school office gave you.")))


def register(reg: Registry) -> None:
    reg.add_handler(Handler(start, commands=("start",), allow_unlinked=True,
                            description=N_("Start and link your account"), order=0))
    reg.on_contact = on_contact
    reg.on_unlinked = on_unlinked
