"""The channel-neutral framework: it knows no workflow.

* :mod:`bot.core.messages` — what comes in (:class:`Inbound`) and goes out (:class:`Reply`,
  :class:`Outbound`, buttons);
* :mod:`bot.core.flow` — steps, flows, handlers, the :class:`Workflow` declaration and the
  :class:`Registry` that discovery fills;
* :mod:`bot.core.context` — the context a step receives (:class:`Ctx`) and its typed services;
* :mod:`bot.core.sending` — the persistent outbox and the :class:`Sender`;
* :mod:`bot.core.dispatcher` — one database unit per event, routing.

A channel adapter turns a platform update into an :class:`Inbound` and hands it to
:meth:`Dispatcher.handle`. Workflow steps return a :class:`Step`; they never send anything
themselves. After the unit commits, the :class:`Outbound` messages go to the adapters of every
recipient. Nothing here imports ``telegram`` or ``aiohttp`` (a test checks it)."""

from bot.core.clock import Clock, SystemClock
from bot.core.context import Ctx, Host, Services, destinations
from bot.core.dispatcher import CHOICE, Dispatcher, KeyedLocks, choice, choice_value
from bot.core.flow import (
    ApprovalHook,
    Flow,
    Handler,
    HandlerFn,
    Registry,
    Step,
    StepFn,
    TickJob,
    Workflow,
    load_registry,
)
from bot.core.messages import (
    Button,
    ChannelName,
    Contact,
    FileRef,
    Inbound,
    Keyboard,
    MessageRef,
    Outbound,
    OutFile,
    Reply,
    keyboard,
    payload_to_reply,
    reply_to_payload,
)
from bot.core.sending import ChannelAdapter, RetryLater, Sender

__all__ = [
    "CHOICE", "ApprovalHook", "Host", "Button", "ChannelAdapter", "ChannelName", "Clock", "Contact", "Ctx", "Dispatcher",
    "FileRef", "Flow", "Handler", "HandlerFn", "Inbound", "Keyboard", "KeyedLocks", "MessageRef", "OutFile",
    "Outbound", "Registry", "Reply", "RetryLater", "Sender", "Services", "Step", "StepFn", "SystemClock", "TickJob",
    "Workflow", "choice", "choice_value", "destinations", "keyboard", "load_registry", "payload_to_reply",
    "reply_to_payload",
]
