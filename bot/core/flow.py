"""Steps, flows, handlers, the :class:`Workflow` declaration and the :class:`Registry` that
discovery fills."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from bot.core.messages import Inbound, Reply
from storage.models import Person, School

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    from sqlmodel import Session

    from bot.core.context import Ctx
    from storage.models import Approval

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Step:
    """What a workflow step (or a handler) decided.

    * ``goto(state, ...)`` moves to the next state; ``stay(...)`` keeps the state (validation error
      or re-prompt); ``done(...)`` ends the workflow; ``start_flow(name)`` starts another one."""

    replies: list[Reply] = field(default_factory=list)
    next: str | None = None
    end: bool = False
    start: str | None = None
    seed: dict[str, Any] | None = None  # initial draft data of the flow being started

    @classmethod
    def goto(cls, state: str, *replies: Reply) -> Step:
        return cls(list(replies), next=state)

    @classmethod
    def stay(cls, *replies: Reply) -> Step:
        return cls(list(replies))

    @classmethod
    def done(cls, *replies: Reply) -> Step:
        return cls(list(replies), end=True)

    @classmethod
    def start_flow(cls, name: str, *replies: Reply, seed: dict[str, Any] | None = None) -> Step:
        return cls(list(replies), start=name, seed=seed)


StepFn = Callable[["Ctx", Inbound], Step]
StartFn = Callable[["Ctx"], Step]


@dataclass(frozen=True)
class Flow:
    """One workflow: an entry point and a table of states (see ``bot/flows/profile.py``)."""

    name: str
    title: str  # msgid, shown on the menu button
    start: StartFn
    states: Mapping[str, StepFn]
    command: str | None = None
    description: str = ""  # msgid, for /trogiup
    roles: frozenset[str] | None = None  # None: every linked, active person
    order: int = 100
    in_menu: bool = True
    icon: str = ""

    def allowed(self, person: Person) -> bool:
        return self.roles is None or any(r in self.roles for r in person.roles)


HandlerFn = Callable[["Ctx"], Step]


@dataclass(frozen=True)
class Handler:
    """An entry point that is not a workflow: a command and/or a payload namespace."""

    fn: HandlerFn
    commands: tuple[str, ...] = ()
    prefix: str | None = None  # payload namespace, e.g. "ap" for "ap:12:ok"
    allow_unlinked: bool = False
    roles: frozenset[str] | None = None
    description: str = ""  # msgid for /trogiup
    order: int = 100


class ApprovalHook(Protocol):
    """Called in the decider's unit when an approval of the workflow's kind ends.

    ``outcome`` is ``"approved"`` or ``"rejected"``; the hook updates the workflow's own records
    and queues its messages on ``ctx`` (it never sends)."""

    def __call__(self, ctx: Ctx, approval: Approval, outcome: str) -> None: ...


class Rule(Protocol):
    """What the registry needs of a reminder rule (:class:`bot.engine.reminders.Rule`)."""

    @property
    def key(self) -> str: ...


class StaffImportHook(Protocol):
    """Called by the staff import (``main.py import-staff``) in its transaction, after the file was
    applied: ``known`` are the school's people before the import, ``was_active`` their ids that
    were in service (accounts: revocation checklists of leavers, newcomers' e-mail names)."""

    def __call__(self, session: Session, *, school: School, known: Sequence[Person], was_active: set[int | None],
                 now: datetime) -> object: ...


class DemoSeeder(Protocol):
    """Called by ``main.py demo`` with the demo school once its people exist (must be idempotent):
    the workflow's sample data. ``data_dir`` is where the demo keeps files (recordings …)."""

    def __call__(self, session: Session, school: School, *, data_dir: Path) -> object: ...


@dataclass(frozen=True, slots=True)
class TickJob:
    """Periodic work of a workflow run by the scheduler at every tick, in one database unit
    (footage: deleting expired clips, picking up cuts a crash left behind)."""

    key: str
    fn: Callable[[Ctx], None]


IdleFn = Callable[["Ctx"], "Step | None"]
#: ``hook(ctx, person)``: ``person`` has (just) linked a channel account (see ``Registry.person_linked_hooks``)
PersonLinkedHook = Callable[["Ctx", Person], object]


@dataclass(frozen=True)
class Workflow:
    """A workflow package's single declaration (``WORKFLOW`` in its ``__init__.py``).

    Discovery (:meth:`Registry.discover`) reads this object and nothing else: the conversations
    (``flows``), the commands and button namespaces that are not a conversation (``handlers``), the
    approval kinds it decides (``approval_hooks``), its reminder ``rules``, its periodic ``jobs``, its
    ``tables`` (registered with the metadata by importing the package) and its per-school
    ``settings`` model (:class:`bot.settings.WorkflowSettings`). Two workflows claiming the same
    command, button prefix, approval kind or rule key fail at start."""

    name: str
    title: str  # msgid, e.g. for ``main.py workflows`` and the console
    flows: tuple[Flow, ...] = ()
    handlers: tuple[Handler, ...] = ()
    approval_hooks: Mapping[str, ApprovalHook] = field(default_factory=dict)
    rules: Sequence[Rule] = ()
    jobs: tuple[TickJob, ...] = ()
    tables: tuple[type[Any], ...] = ()
    settings: type[Any] | None = None
    #: called whenever a linked person writes (e.g. to release notices held for them)
    on_person_seen: tuple[Callable[[Ctx], object], ...] = ()
    #: called when a person links a channel account, and by the scheduler for people who have cards
    #: waiting and a linked channel (see :attr:`Registry.person_linked_hooks`)
    on_person_linked: tuple[PersonLinkedHook, ...] = ()
    #: tried, in discovery order, on a message outside any conversation; ``None`` passes it on
    on_idle: IdleFn | None = None
    #: called by the staff import in its transaction (see :class:`StaffImportHook`)
    on_staff_import: StaffImportHook | None = None
    #: ``main.py demo``: the workflow's sample data in the demo school (see :class:`DemoSeeder`)
    demo_seed: DemoSeeder | None = None
    #: ``main.py demo`` (unless ``--no-recordings``): slow media to prepare, e.g. synthetic recordings
    demo_media: Callable[[Path], object] | None = None

    @property
    def commands(self) -> tuple[str, ...]:
        out = [f.command for f in self.flows if f.command]
        out += [c for h in self.handlers for c in h.commands]
        return tuple(out)

    @property
    def prefixes(self) -> tuple[str, ...]:
        return tuple(h.prefix for h in self.handlers if h.prefix)


class Registry:
    """Workflows (discovered from ``bot.flows``: each package's or module's ``WORKFLOW``) and the
    entry points that are not a workflow (``register(reg)`` of each module in ``bot.handlers``)."""

    def __init__(self) -> None:
        self.workflows: dict[str, Workflow] = {}
        self.flows: dict[str, Flow] = {}
        self.handlers: list[Handler] = []
        self._by_command: dict[str, Handler | Flow] = {}
        self._by_prefix: dict[str, Handler] = {}
        #: who claimed a command, prefix, approval kind or rule key ("the framework" or a workflow)
        self._owner: dict[str, str] = {}
        self._claimant = "the framework"
        self.on_contact: HandlerFn | None = None
        self.on_unlinked: HandlerFn | None = None
        self.on_idle: HandlerFn | None = None
        self.on_unknown_command: HandlerFn | None = None
        #: the main menu (set by ``bot.handlers.menu``), shown when nothing else applies
        self.menu: Callable[[Ctx], Reply] | None = None
        #: workflows' quick paths tried before ``on_idle`` (see :attr:`Workflow.on_idle`)
        self.idle_hooks: list[IdleFn] = []
        #: kind → the hook called in the decider's unit when an approval of that kind ends
        self.approval_hooks: dict[str, ApprovalHook] = {}
        #: reminder rules (bot.engine.reminders.Rule) declared by the workflows
        self.rules: dict[str, Any] = {}
        #: periodic jobs declared by the workflows, run by the scheduler at every tick
        self.jobs: dict[str, TickJob] = {}
        #: called with the context whenever a linked person writes (e.g. to release held notices)
        self.person_seen_hooks: list[Callable[[Ctx], object]] = []
        #: called with the context and the person when that person links a channel account (and
        #: again by the scheduler while cards wait for someone already linked): deliver what was
        #: kept for them. Each hook must be idempotent (a database guard, not memory).
        self.person_linked_hooks: list[PersonLinkedHook] = []

    # -- claims ------------------------------------------------------------------------------------
    def _take(self, what: str) -> None:
        owner = self._owner.get(what)
        if owner is not None:
            raise ValueError(f"{what} is claimed twice: by {owner} and by {self._claimant}")
        self._owner[what] = self._claimant

    def add_flow(self, flow: Flow) -> None:
        self._take(f"flow {flow.name!r}")
        self.flows[flow.name] = flow
        if flow.command:
            self._claim(flow.command, flow)

    def add_rule(self, rule: Any) -> None:
        self._take(f"reminder rule {rule.key!r}")
        self.rules[rule.key] = rule

    def add_handler(self, handler: Handler) -> None:
        self.handlers.append(handler)
        for c in handler.commands:
            self._claim(c, handler)
        if handler.prefix:
            if handler.prefix == "c":
                raise ValueError("button prefix 'c' is the framework's (answers to the active step)")
            self._take(f"button prefix {handler.prefix!r}")
            self._by_prefix[handler.prefix] = handler

    def add_approval_hook(self, kind: str, hook: ApprovalHook) -> None:
        self._take(f"approval kind {kind!r}")
        self.approval_hooks[kind] = hook

    def add_job(self, job: TickJob) -> None:
        self._take(f"periodic job {job.key!r}")
        self.jobs[job.key] = job

    def _claim(self, command: str, target: Handler | Flow) -> None:
        self._take(f"command /{command}")
        self._by_command[command] = target

    def add_workflow(self, wf: Workflow) -> None:
        """Register everything a workflow declares; a clash with what is already registered
        raises :class:`ValueError` naming both claimants."""
        if wf.name in self.workflows:
            raise ValueError(f"workflow {wf.name!r} is declared twice")
        self._claimant = f"workflow {wf.name!r}"
        try:
            self.workflows[wf.name] = wf
            for flow in wf.flows:
                self.add_flow(flow)
            for handler in wf.handlers:
                self.add_handler(handler)
            for kind, hook in wf.approval_hooks.items():
                self.add_approval_hook(kind, hook)
            for rule in wf.rules:
                self.add_rule(rule)
            for job in wf.jobs:
                self.add_job(job)
            self.person_seen_hooks.extend(wf.on_person_seen)
            self.person_linked_hooks.extend(wf.on_person_linked)
            if wf.on_idle is not None:
                self.idle_hooks.append(wf.on_idle)
        finally:
            self._claimant = "the framework"

    # -- look-ups ----------------------------------------------------------------------------------
    def command(self, name: str) -> Handler | Flow | None:
        return self._by_command.get(name)

    def payload_handler(self, payload: str) -> Handler | None:
        return self._by_prefix.get(payload.split(":", 1)[0])

    def flows_for(self, person: Person) -> list[Flow]:
        return sorted((f for f in self.flows.values() if f.allowed(person)), key=lambda f: (f.order, f.name))

    def commands_for(self, person: Person | None) -> list[tuple[str, str]]:
        """(command, description msgid) pairs this person may use, for help and setMyCommands."""
        out: list[tuple[int, str, str]] = []
        for h in self.handlers:
            if h.description and h.commands and (person is None or h.roles is None
                                                 or any(r in h.roles for r in person.roles)):
                out.append((h.order, h.commands[0], h.description))
        for f in self.flows.values():
            if f.command and (person is None or f.allowed(person)):
                out.append((f.order, f.command, f.description or f.title))
        return [(c, d) for _, c, d in sorted(out)]

    def settings_models(self) -> dict[str, type[Any]]:
        """Workflow name → its per-school settings model, for the workflows that have one."""
        return {name: wf.settings for name, wf in self.workflows.items() if wf.settings is not None}

    # -- discovery ---------------------------------------------------------------------------------
    def discover(self, flows_package: str = "bot.flows", handlers_package: str = "bot.handlers", *,
                 only: Collection[str] | None = None) -> Registry:
        """``register(reg)`` of every module of ``handlers_package``, then ``WORKFLOW`` of every
        package or module of ``flows_package`` (importing a workflow package registers its tables);
        ``only``: the names of the workflows to register (tests that count one workflow's messages)."""
        if handlers_package:
            for module in _modules(handlers_package):
                register = getattr(module, "register", None)
                if callable(register):
                    register(self)
        for wf in discover_workflows(flows_package):
            if only is None or wf.name in only:
                self.add_workflow(wf)
        return self


def _modules(pkg_name: str) -> list[Any]:
    pkg = importlib.import_module(pkg_name)
    return [importlib.import_module(f"{pkg_name}.{m.name}")
            for m in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name) if not m.name.startswith("_")]


def discover_workflows(flows_package: str = "bot.flows") -> list[Workflow]:
    """The ``WORKFLOW`` of every package and module directly under ``flows_package``."""
    out = []
    for module in _modules(flows_package):
        wf = getattr(module, "WORKFLOW", None)
        if isinstance(wf, Workflow):
            out.append(wf)
    return out


def load_registry() -> Registry:
    return Registry().discover()
