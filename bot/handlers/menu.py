"""The main menu (depends on roles), help, cancel, and free text when no workflow is active."""

from __future__ import annotations

from bot.channels.admin.access import CONSOLE_ROLES
from bot.core import Button, Ctx, Handler, Registry, Reply, Step, keyboard
from bot.engine import approvals
from bot.i18n import N_
from bot.roles import ROLE_TITLES, Role
from bot.text import fold
from storage.models import Person

MENU_PREFIX = "m"
#: ``m:choduyet``: the requests waiting for one's decision (as ``/choduyet``)
PENDING = "choduyet"


def roles_text(ctx: Ctx, person: Person) -> str:
    titles = []
    for r in person.roles:
        try:
            titles.append(ctx.t(ROLE_TITLES[Role(r)]))
        except (ValueError, KeyError):
            continue
    return ", ".join(titles) or ctx.t("staff member")


def menu_reply(ctx: Ctx, text: str | None = None) -> Reply:
    person = ctx.person
    assert person is not None
    flows = [f for f in ctx.registry.flows_for(person) if f.in_menu]
    buttons = [Button(f"{f.icon} {ctx.t(f.title)}".strip(), f"{MENU_PREFIX}:{f.name}") for f in flows]
    waiting = approvals.count_pending(ctx.session, person, ctx.today())
    if waiting:  # first: what waits for a decision (also when its card was never received)
        buttons.insert(0, Button(ctx.t("📋 Waiting for your decision ({n})", n=waiting), f"{MENU_PREFIX}:{PENDING}"))
    if person.has_role(*CONSOLE_ROLES):  # the web console's login link (/dangnhap)
        buttons.append(Button(ctx.t("🖥 School console"), "adm:login"))
    buttons.append(Button(ctx.t("❓ Help"), f"{MENU_PREFIX}:help"))
    return Reply(text or ctx.t("What would you like to do?"), buttons=keyboard(*buttons, per_row=2))


def help_reply(ctx: Ctx) -> Reply:
    person = ctx.person
    lines = [ctx.t("<b>What you can do</b>")]
    for command, desc in ctx.registry.commands_for(person):
        lines.append(ctx.t("/{command} — {description}", command=command, description=ctx.t(desc)))
    lines.append("")
    lines.append(ctx.t("Type /huy at any time to cancel what you are doing."))
    return Reply("\n".join(lines))


def show_menu(ctx: Ctx) -> Step:
    return Step.stay(menu_reply(ctx))


def show_help(ctx: Ctx) -> Step:
    return Step.stay(help_reply(ctx), menu_reply(ctx))


def cancel(ctx: Ctx) -> Step:
    conv = ctx.conversation
    if conv is None or not conv.flow:
        return Step.stay(Reply(ctx.t("There is nothing to cancel.")), menu_reply(ctx))
    flow = ctx.registry.flows.get(conv.flow)
    return Step.done(Reply(ctx.t("Cancelled “{flow}”. Nothing was sent.", flow=ctx.t(flow.title) if flow else "")),
                     menu_reply(ctx))


def on_menu_payload(ctx: Ctx) -> Step:
    """``m:<flow>`` starts a workflow (the dispatcher checks the roles again); ``m:help`` shows help."""
    name = (ctx.inbound.payload or "").split(":", 1)[1] if ":" in (ctx.inbound.payload or "") else ""
    if name == "help":
        return show_help(ctx)
    if name == PENDING:
        from bot.handlers.approvals import pending

        return pending(ctx)
    if name in ctx.registry.flows:
        return Step.start_flow(name)
    return Step.stay(menu_reply(ctx, ctx.t("That button is no longer valid. Here is the menu again.")))


def on_idle(ctx: Ctx) -> Step:
    """Free text with no workflow active: a flow's name or command word starts it; else the menu."""
    text = fold(ctx.inbound.text or "").lstrip("/")
    if text and ctx.person is not None:
        for flow in ctx.registry.flows_for(ctx.person):
            names = {fold(ctx.t(flow.title)), fold(flow.title), fold(flow.command or "")}
            if text in names - {""}:
                return Step.start_flow(flow.name)
        if text in ("menu", "bat dau", "start"):
            return show_menu(ctx)
        if text in ("huy", "cancel"):
            return cancel(ctx)
    if ctx.inbound.files or ctx.inbound.location:
        return Step.stay(menu_reply(ctx, ctx.t("I received your attachment, but no workflow is open. "
                                               "Choose what it is for first.")))
    return Step.stay(menu_reply(ctx, ctx.t("Choose what you would like to do:")))


def unknown_command(ctx: Ctx) -> Step:
    return Step.stay(Reply(ctx.t("I don't know the command /{command}. Type /trogiup to see what you can do.",
                                 command=ctx.inbound.command or "")))


def register(reg: Registry) -> None:
    reg.add_handler(Handler(show_menu, commands=("menu",), description=N_("Show the main menu"), order=1))
    reg.add_handler(Handler(show_help, commands=("trogiup", "help"), description=N_("What I can do for you"),
                            order=2))
    reg.add_handler(Handler(cancel, commands=("huy", "cancel"), description=N_("Cancel what you are doing"),
                            order=3))
    reg.add_handler(Handler(on_menu_payload, prefix=MENU_PREFIX))
    reg.on_idle = on_idle
    reg.menu = menu_reply
    reg.on_unknown_command = unknown_command
