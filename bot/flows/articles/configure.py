"""``/caidat_baiviet`` — the school's choices for the article pipeline (principal, board head):
who approves (the board head; the principal; or the board member delegated for each category,
001 Điều 12.2 / 13.2), the payment per published article (Điều 21: 30.000 ₫ when funded, 0 when
not), and the portal's address that published links must belong to. Every change is audited.

The monthly nudge's day and the other reminders are tuned in the calendar (``articles.*`` rules).

```mermaid
stateDiagram-v2
    [*] --> menu: /caidat_baiviet
    menu --> menu: approver chosen
    menu --> mapcat: assign categories
    mapcat --> mapwho: category chosen
    mapwho --> menu: board member chosen (or none)
    menu --> rate: payment
    rate --> menu: amount typed
    menu --> domains: portal address
    domains --> menu: addresses typed (or none)
    menu --> [*]: done
```
"""

from __future__ import annotations

import re
from typing import Any

from bot.core import Ctx, Flow, Inbound, Reply, Step, choice, choice_value, keyboard
from bot.flows.articles.service import CATEGORIES, category_title
from bot.flows.articles.settings import MAX_RATE, ArticleSettings
from bot.i18n import N_
from bot.roles import Role
from bot.settings import save
from bot.text import fold, parse_id
from storage.models import Person
from storage.people import people_with_roles

MODES = {"board_head": N_("the head of the editorial board"), "principal": N_("the principal"),
         "category": N_("the board member assigned to the category (else the board head)")}
_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")


def _cfg(ctx: Ctx) -> ArticleSettings:
    return ArticleSettings.of(ctx.school)


def _save(ctx: Ctx, **changes: Any) -> None:
    school = ctx.school
    assert school is not None
    save(school, _cfg(ctx).updated(**changes))  # a new dict: the JSON column sees the change
    ctx.session.add(school)
    ctx.session.flush()
    ctx.audit("article.settings_changed", f"school:{school.id}", **changes)


def _menu(ctx: Ctx, note: str | None = None) -> Reply:
    cfg = _cfg(ctx)
    mode = cfg.approver
    lines = [note, ""] if note else []
    lines.append(ctx.t("<b>Article pipeline settings</b>"))
    lines.append(ctx.t("Articles are approved by {who}.", who=ctx.t(MODES.get(mode, MODES["board_head"]))))
    for key in CATEGORIES:
        pid = cfg.category_approvers.get(key)
        pid_ = parse_id(str(pid)) if pid is not None else None
        person = ctx.session.get(Person, pid_) if pid_ is not None else None
        if person is not None:
            lines.append(ctx.t("• {category}: {name}", category=category_title(ctx.tr, key), name=person.full_name))
    rate = cfg.rate
    lines.append(ctx.t("Payment per published article: {rate}.", rate=ctx.tr.money(rate)) if rate
                 else ctx.t("Payment per published article: none (not funded)."))
    domains = cfg.portal_domains
    lines.append(ctx.t("Portal address: {domains}.", domains=", ".join(domains)) if domains
                 else ctx.t("Portal address: any (links are only checked to be web addresses)."))
    lines.append(ctx.t("Outside the activity plan, the board head always decides (Article 15.2)."))
    buttons = [choice(("☑️ " if mode == key else "") + ctx.t(label), f"ap:{key}") for key, label in (
        ("board_head", N_("Board head approves")), ("principal", N_("Principal approves")),
        ("category", N_("Board member by category")))]
    buttons += [choice(ctx.t("👥 Assign categories"), "map"), choice(ctx.t("💰 Payment"), "rate"),
                choice(ctx.t("🌐 Portal address"), "domains"), choice(ctx.t("✅ Done"), "done")]
    return Reply("\n".join(lines), buttons=keyboard(*buttons, per_row=1))


def start(ctx: Ctx) -> Step:
    """Show the current choices."""
    return Step.goto("menu", _menu(ctx))


def menu(ctx: Ctx, msg: Inbound) -> Step:
    """Change the approver, or go to one of the other settings."""
    value = choice_value(msg) or ""
    if value.startswith("ap:") and value[3:] in MODES:
        _save(ctx, approver=value[3:])
        return Step.stay(_menu(ctx, ctx.t("Saved.")))
    if value == "map":
        return Step.goto("mapcat", Reply(ctx.t("Which category?"), buttons=keyboard(
            *[choice(ctx.t(label), f"k:{key}") for key, label in CATEGORIES.items()], per_row=1)))
    if value == "rate":
        return Step.goto("rate", Reply(ctx.t("How much is paid per published article? Type the amount in đồng, "
                                             "for example 30.000, or 0 when there is no funding.")))
    if value == "domains":
        return Step.goto("domains", Reply(ctx.t("Type the portal's address (for example thuongthanh.edu.vn); "
                                                "several separated by commas. Type “không” to accept any address.")))
    if value == "done":
        return Step.done(Reply(ctx.t("The settings are saved.")))
    return Step.stay(Reply(ctx.t("Please choose one of the buttons.")), _menu(ctx))


def _board(ctx: Ctx) -> list[Person]:
    assert ctx.person is not None
    return people_with_roles(ctx.session, school_id=ctx.person.school_id, roles=[Role.BOARD_MEMBER, Role.BOARD_HEAD])


def mapcat(ctx: Ctx, msg: Inbound) -> Step:
    """Pick the category to assign."""
    value = choice_value(msg) or ""
    key = value[2:] if value.startswith("k:") else ""
    if key not in CATEGORIES:
        return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))
    ctx.data["category"] = key
    buttons = [choice(p.full_name, f"p{p.id}") for p in _board(ctx)]
    buttons.append(choice(ctx.t("Nobody (the board head)"), "p0"))
    return Step.goto("mapwho", Reply(ctx.t("Who approves “{category}”?", category=category_title(ctx.tr, key)),
                                     buttons=keyboard(*buttons, per_row=1)))


def mapwho(ctx: Ctx, msg: Inbound) -> Step:
    """Assign a board member (checked on the server) or nobody."""
    value = choice_value(msg) or ""
    key = str(ctx.data.get("category", ""))
    pid = parse_id(value[1:]) if value.startswith("p") else None
    if pid is None or key not in CATEGORIES:
        return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))
    mapping = dict(_cfg(ctx).category_approvers)
    if pid == 0:
        mapping.pop(key, None)
    else:
        if all(p.id != pid for p in _board(ctx)):
            return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))
        mapping[key] = pid
    _save(ctx, category_approvers=mapping)
    return Step.goto("menu", _menu(ctx, ctx.t("Saved.")))


def rate(ctx: Ctx, msg: Inbound) -> Step:
    """An amount as people type it: ``30.000``, ``30000 đ``, ``30k``, ``0``."""
    raw = fold(msg.text or "").replace(" ", "")
    thousands = raw.endswith("k") or raw.endswith("nghin") or raw.endswith("ngan")
    digits = re.sub(r"[.,]|d$|dong$|vnd$|₫$|k$|nghin$|ngan$", "", raw)
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 12:
        return Step.stay(Reply(ctx.t("Please type the amount as a number, for example 30.000.")))
    amount = int(digits) * (1000 if thousands else 1)
    if amount > MAX_RATE:
        return Step.stay(Reply(ctx.t("That amount is too large. Please check it.")))
    _save(ctx, rate=amount)
    return Step.goto("menu", _menu(ctx, ctx.t("Saved.")))


def domains(ctx: Ctx, msg: Inbound) -> Step:
    """Host names (``thuongthanh.edu.vn``), or ``không`` for none."""
    text = fold(msg.text or "")
    if text in ("khong", "none", "-", "0"):
        _save(ctx, portal_domains=[])
        return Step.goto("menu", _menu(ctx, ctx.t("Saved.")))
    hosts = []
    for part in re.split(r"[,;\s]+", text):
        host = re.sub(r"^https?://", "", part).split("/")[0].strip().lstrip(".")
        if host.startswith("www."):
            host = host[4:]
        if host and not _HOST.match(host):
            return Step.stay(Reply(ctx.t("“{value}” is not a web address. Type it like thuongthanh.edu.vn.",
                                         value=part)))
        if host and host not in hosts:
            hosts.append(host)
    if not hosts:
        return Step.stay(Reply(ctx.t("Type it like thuongthanh.edu.vn, or “không”.")))
    _save(ctx, portal_domains=hosts)
    return Step.goto("menu", _menu(ctx, ctx.t("Saved.")))


FLOW = Flow(
    name="article_settings",
    command="caidat_baiviet",
    title=N_("Article settings"),
    description=N_("Who approves articles, the payment per article, the portal's address"),
    icon="⚙️",
    start=start,
    states={"menu": menu, "mapcat": mapcat, "mapwho": mapwho, "rate": rate, "domains": domains},
    roles=frozenset({Role.PRINCIPAL, Role.BOARD_HEAD}),
    order=85,
)
