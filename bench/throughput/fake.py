"""The fake Bot API process of the benchmarks: ``tests.fakes.telegram_server.FakeTelegram`` plus a load
driver that feeds scripted update streams and times the bot's answers.

Run by ``bench/throughput/run.py`` and ``bench/memory/run.py``; prints one JSON line
``{"ready": true, "api": <port>, "control": <port>}`` and serves until stdin closes. The control port
takes ``POST /run`` (a JSON :class:`Plan`; answers with the figures when the load is done) and
``POST /reset`` (forget chats and calls between phases).

**Latency** of a step = from the moment ``getUpdates`` hands the update out (the fake's handler
returns it) until the first ``sendMessage`` / ``editMessageText`` answering it reaches the fake. A
step is *complete* when all the messages it produces in that chat have arrived (each scripted step
knows how many); only then does that user send the next one, so no answer is attributed to the wrong
step. Approval cards arriving in a principal's chat are not answers: they queue up for the principal
to tap; the answer to a tap is "✅ You approved …" (edits of the card are counted apart). After ``📨 Send`` a teacher waits for the "approved" notice before starting over."""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import common  # noqa: F401  (puts the repository on sys.path)
from aiohttp import web
from common import TOKEN, percentile, say, wait_stdin_closed

from tests.fakes.telegram_server import FakeTelegram, StoredFile

now = time.perf_counter


@dataclass(frozen=True)
class Step:
    kind: str  # cmd | text | tap
    value: str  # command name, text, or payload ("{email}" / "{ap}" filled in per user)
    label: str
    answers: int = 1  # messages the step produces in the user's own chat


TEACHER = [
    Step("cmd", "start", "/start", 1),  # the greeting and the menu, one message
    Step("cmd", "menu", "/menu"),
    Step("cmd", "hoso", "/hoso"),
    Step("tap", "c:email", "hoso: c:email"),
    Step("text", "{email}", "hoso: typed e-mail"),
    Step("tap", "c:done", "hoso: c:done"),
    Step("cmd", "camera", "/camera"),
    Step("text", "cổng", "camera: typed name"),
    Step("text", "Hôm nay", "camera: Hôm nay"),
    Step("text", "8h30", "camera: 8h30"),
    Step("tap", "c:5", "camera: c:5 (minutes)"),
    Step("tap", "c:work", "camera: c:work (purpose)"),
    Step("tap", "c:send", "camera: c:send"),
]
# "✅ You approved …" is the answer. The card itself is edited too, but only when the bot has already
# recorded where it sent the card (Sender.remember, a unit after the sending): a tap faster than that
# leaves the card unedited, so card edits are counted apart (``card_edits``), never as answers.
APPROVE = Step("tap", "{ap}", "principal: ap:<id>:ok")
# The echo bot gets the same shape: the same commands, texts and taps, and a tap instead of the approval.
ECHO = [*TEACHER, Step("tap", "ap:0:ok", "principal: ap:<id>:ok")]
ECHO = [Step(s.kind, s.value, s.label, 1) for s in ECHO]
# Memory: stop in the middle of a workflow (half in /camera at "how long?", half in /hoso at "e-mail?").
MEMORY_CAMERA = TEACHER[6:10]
MEMORY_HOSO = TEACHER[2:4]


@dataclass
class Pending:
    update_id: int
    step: Step
    sent: float
    measured: bool
    handout: float | None = None
    first: float | None = None
    got: int = 0


@dataclass
class Actor:
    uid: int
    script: list[Step]
    principal: bool = False
    cyclic: bool = True
    pos: int = 0
    inflight: Pending | None = None
    waiting_notice: float | None = None  # teacher: since when waiting for the approval notice
    cards: deque[tuple[int, str]] = field(default_factory=deque)  # principal: (message id, payload)
    done: bool = False
    entered: bool = True  # False until a staggered start lets the actor in (Plan.stagger)


@dataclass
class Plan:
    scenario: str  # ours | echo | memory
    teachers: list[int]
    principals: list[int]
    count: int = 1000  # measured steps
    warmup: int = 100
    rate: float | None = None  # updates/s (open loop); None: closed loop, every user as fast as answered
    step_timeout: float = 30.0
    # Open loop: teachers enter one by one over one cycle's time instead of all at once. The ticker
    # serves ready users in turn, so users who start together stay in step: every footage request
    # (the heaviest step) of a round would reach the bot within the same 0.6 s. Staggered, each
    # round holds users at every step of the cycle, as a school's traffic does. Measuring starts
    # once everyone is in (and after ``warmup`` updates).
    stagger: bool = False
    transcripts: list[int] = field(default_factory=list)  # chats to return as text (checking the script)


class Driver:
    def __init__(self, fake: BenchFake, plan: Plan) -> None:
        self.fake = fake
        self.plan = plan
        self.actors: dict[int, Actor] = {}
        if plan.scenario == "echo":
            for uid in plan.principals + plan.teachers:
                self.actors[uid] = Actor(uid, ECHO)
        elif plan.scenario == "memory":
            for i, uid in enumerate(plan.teachers + plan.principals):
                self.actors[uid] = Actor(uid, MEMORY_CAMERA if i % 2 == 0 else MEMORY_HOSO, cyclic=False)
        else:
            for uid in plan.teachers:
                self.actors[uid] = Actor(uid, TEACHER)
            for uid in plan.principals:
                self.actors[uid] = Actor(uid, [APPROVE], principal=True)
        self.pending: dict[int, Pending] = {}
        self.ready: deque[Actor] = deque()
        self.open_loop = plan.rate is not None
        self.sent = 0
        self.sent_measured = 0
        self.answered = 0
        self.t_start: float | None = None
        self.answered_at_start = 0
        self.t_end: float | None = None
        self.t_first_send: float | None = None
        self.t_last_send: float | None = None
        self.latency: list[float] = []
        self.complete: list[float] = []
        self.from_push: list[float] = []
        self.queue_wait: list[float] = []
        self.by_label: dict[str, list[float]] = {}
        self.timeouts = 0
        self.timeout_details: list[str] = []
        self.notice_timeouts = 0
        self.unexpected = 0
        self.skipped_ticks = 0
        self.entering = 0  # actors not yet let in (Plan.stagger)
        self.staggered = 0  # actors who entered late (Plan.stagger)
        self.all_in: float | None = None  # when the last of them entered
        self.started = now()
        self.cards = 0
        self.taps = 0
        self.card_edits = 0
        self.notices = 0
        self.finished = asyncio.Event()
        self.calls_before = len(fake.calls)

    # -- scheduling -------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        if self.plan.scenario == "memory":
            return sum(len(a.script) for a in self.actors.values())
        return self.plan.warmup + self.plan.count

    def stopping(self) -> bool:
        if self.open_loop:
            return self.sent_measured >= self.plan.count  # (staggered: the warm-up lasts until all are in)
        return self.sent >= self.total

    def make_ready(self, a: Actor) -> None:
        if a.done or not a.entered or a.inflight is not None or a.waiting_notice is not None:
            return
        if a.principal and not a.cards:
            return
        if self.open_loop:
            self.ready.append(a)
        elif not self.stopping():
            asyncio.get_running_loop().call_soon(self.send, a)

    def send(self, a: Actor) -> bool:
        if a.inflight is not None or self.stopping() or a.done:
            return False
        fake = self.fake
        if a.principal:
            if not a.cards:
                return False
            mid, payload = a.cards.popleft()
            self.taps += 1
            step = a.script[0]
            update = fake.callback_update(a.uid, payload, message_id=mid)
        else:
            step = a.script[a.pos]
            a.pos += 1
            if a.pos >= len(a.script):
                if a.cyclic:
                    a.pos = 0
                else:
                    a.done = True
            value = step.value.replace("{email}", f"gv{a.uid}@truong.edu.vn")
            if step.kind == "cmd":
                update = fake.command_update(a.uid, value)
            elif step.kind == "text":
                update = fake.text_update(a.uid, value)
            else:
                update = fake.callback_update(a.uid, value, message_id=self._carrier(a.uid, value))
        t = now()
        measured = self.warmed_up() if self.open_loop else self.t_start is not None
        if self.plan.scenario == "memory":
            measured = True
        p = Pending(update["update_id"], step, t, measured)
        self.pending[p.update_id] = p
        a.inflight = p
        self.sent += 1
        if measured:
            self.sent_measured += 1
            if self.t_first_send is None:
                self.t_first_send = t
            self.t_last_send = t
        fake.push_update(update)
        return True

    def warmed_up(self) -> bool:
        return self.sent >= self.plan.warmup and not self.entering

    def enter(self, a: Actor) -> None:
        a.entered = True
        self.entering -= 1
        if not self.entering:
            self.all_in = now()
        self.make_ready(a)

    def _carrier(self, chat: int, payload: str) -> int | None:
        """The newest bot message in the chat carrying that button (else the newest bot message)."""
        last: int | None = None
        for m in reversed(self.fake.chats.get(chat, [])):
            if not m.from_bot or m.deleted:
                continue
            if last is None:
                last = m.message_id
            for row in m.inline_buttons:
                for b in row:
                    if b.get("callback_data") == payload:
                        return m.message_id
        return last

    # -- events from the fake -----------------------------------------------------------------------
    def handed_out(self, updates: list[dict[str, Any]]) -> None:
        t = now()
        for u in updates:
            p = self.pending.get(u["update_id"])
            if p is not None and p.handout is None:
                p.handout = t

    def bot_message(self, res: dict[str, Any], edit: bool) -> None:
        t = now()
        chat = int(res["chat"]["id"])
        markup = res.get("reply_markup")
        a = self.actors.get(chat)
        if a is None:
            self.unexpected += 1
            return
        if a.principal and edit:
            self.card_edits += 1
            return
        if a.principal and not edit and markup:
            payloads = [b.get("callback_data", "") for row in markup.get("inline_keyboard") or [] for b in row]
            ok = [p for p in payloads if p.startswith("ap:") and p.endswith(":ok")]
            if ok:
                a.cards.append((int(res["message_id"]), ok[0]))
                self.cards += 1
                self.make_ready(a)
                return
        p = a.inflight
        if p is None:
            if a.waiting_notice is not None:
                a.waiting_notice = None
                self.notices += 1
                self.make_ready(a)
            else:
                self.unexpected += 1
            return
        p.got += 1
        if p.first is None:
            p.first = t
            start = p.handout if p.handout is not None else p.sent
            self.answered += 1
            if p.measured:
                self.latency.append(t - start)
                self.from_push.append(t - p.sent)
                self.queue_wait.append(start - p.sent)
                self.by_label.setdefault(p.step.label, []).append(t - start)
            if not self.open_loop and self.plan.scenario != "memory":
                if self.t_start is None and self.answered >= self.plan.warmup:
                    self.t_start = t
                    self.answered_at_start = self.answered
                elif self.t_start is not None and self.t_end is None and \
                        self.answered - self.answered_at_start >= self.plan.count:
                    self.t_end = t
        if p.got >= p.step.answers:
            self._finish(a, p, t)

    def _finish(self, a: Actor, p: Pending, t: float) -> None:
        a.inflight = None
        self.pending.pop(p.update_id, None)
        if p.measured:
            start = p.handout if p.handout is not None else p.sent
            self.complete.append(t - start)
        if p.step.value == "c:send" and self.plan.scenario == "ours":
            a.waiting_notice = t
        self.make_ready(a)
        self._check_done()

    def _check_done(self) -> None:
        if self.stopping() and not any(p.measured for p in self.pending.values()):
            self.finished.set()

    # -- loops --------------------------------------------------------------------------------------
    async def watchdog(self) -> None:
        while not self.finished.is_set():
            await asyncio.sleep(0.5)
            t = now()
            for a in self.actors.values():
                p = a.inflight
                if p is not None and t - p.sent > self.plan.step_timeout:
                    self.timeouts += 1
                    self._explain(a, f"step {p.step.label!r} (update {p.update_id}, {p.got} of "
                                     f"{p.step.answers} answers, handed out: {p.handout is not None})")
                    a.inflight = None
                    self.pending.pop(p.update_id, None)
                    self.make_ready(a)
                elif a.waiting_notice is not None and t - a.waiting_notice > self.plan.step_timeout:
                    self.notice_timeouts += 1
                    self._explain(a, "waiting for the approval notice")
                    a.waiting_notice = None
                    self.make_ready(a)
            self._check_done()

    def _explain(self, a: Actor, what: str) -> None:
        if len(self.timeout_details) >= 10:
            return
        tail = [("bot: " if m.from_bot else "user: ") + m.text.replace("\n", " | ")[:80]
                for m in self.fake.chats.get(a.uid, [])[-6:]]
        self.timeout_details.append(f"chat {a.uid}: timed out on {what}; last messages: {tail}")

    async def ticker(self) -> None:
        assert self.plan.rate
        interval = 1.0 / self.plan.rate
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        while not self.stopping():
            sent = False
            while self.ready and not sent:
                sent = self.send(self.ready.popleft())
            if not sent and self.warmed_up():
                self.skipped_ticks += 1
            next_t += interval
            delay = next_t - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        self._check_done()

    async def run(self) -> dict[str, Any]:
        self.started = now()
        dog = asyncio.create_task(self.watchdog())
        if self.open_loop and self.plan.stagger:
            assert self.plan.rate
            users = [a for a in self.actors.values() if not a.principal]
            random.Random(11).shuffle(users)
            gap = len(users[0].script) / self.plan.rate if users else 0.0  # n users enter over n × cycle ticks
            loop = asyncio.get_running_loop()
            for i, a in enumerate(users):
                if i:
                    a.entered = False
                    self.entering += 1
                    self.staggered += 1
                    loop.call_later(i * gap, self.enter, a)
        for a in self.actors.values():
            self.make_ready(a)
        tick = asyncio.create_task(self.ticker()) if self.open_loop else None
        await self.finished.wait()
        wall = now() - self.started
        await asyncio.sleep(0.5)  # messages that trail the last answer (the tapped card's edit) still count
        dog.cancel()
        if tick is not None:
            tick.cancel()
        return self.figures(wall)

    def figures(self, wall: float) -> dict[str, Any]:
        def summary(xs: list[float]) -> dict[str, float]:
            return {"n": len(xs), "p50": percentile(xs, 50) * 1000, "p90": percentile(xs, 90) * 1000,
                    "p99": percentile(xs, 99) * 1000, "max": (max(xs) if xs else float("nan")) * 1000,
                    "mean": (sum(xs) / len(xs) if xs else float("nan")) * 1000}

        if self.open_loop:
            span = (self.t_last_send or 0) - (self.t_first_send or 0)
            rate = (self.sent_measured - 1) / span if span > 0 else float("nan")
        else:
            span = (self.t_end or now()) - (self.t_start or now())
            rate = self.plan.count / span if span > 0 else float("nan")
        calls = self.fake.calls[self.calls_before:]
        errors: dict[str, int] = {}
        for c in calls:
            if c.status != 200:
                key = f"{c.method} {c.status}"
                errors[key] = errors.get(key, 0) + 1
        return {
            "scenario": self.plan.scenario, "open_loop": self.open_loop, "wall_s": wall,
            "updates_per_s": rate, "sent": self.sent, "measured": self.sent_measured,
            "latency_ms": summary(self.latency), "complete_ms": summary(self.complete),
            "from_push_ms": summary(self.from_push), "queue_wait_ms": summary(self.queue_wait),
            "by_step_ms": {k: summary(v) for k, v in self.by_label.items()},
            "timeouts": self.timeouts, "notice_timeouts": self.notice_timeouts, "unexpected": self.unexpected,
            "timeout_details": self.timeout_details,
            "staggered": self.staggered,
            "all_in_s": (self.all_in - self.started) if self.all_in is not None else 0.0,
            "first_measured_s": (self.t_first_send - self.started) if self.t_first_send is not None else None,
            "skipped_ticks": self.skipped_ticks, "cards": self.cards, "taps": self.taps,
            "card_edits": self.card_edits, "notices": self.notices,
            "api_calls": len(calls), "api_errors": errors, "connections": len(self.fake.peers),
            "transcripts": {str(uid): [("bot: " if m.from_bot else "user: ") + m.text.replace("\n", " | ")[:100]
                                       + (f" [edited {len(m.edits)}x]" if m.edits else "")
                                       for m in self.fake.chats.get(uid, [])]
                            for uid in self.plan.transcripts},
        }


class BenchFake(FakeTelegram):
    """FakeTelegram that tells the driver about hand-outs and answers."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.driver: Driver | None = None
        self.peers: set[Any] = set()  # client addresses seen: how many connections the bot opened

    async def _api(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer is not None:
            self.peers.add(peer)
        return await super()._api(request)

    async def _m_getupdates(self, p: dict[str, Any], f: dict[str, StoredFile]) -> list[dict[str, Any]]:
        out = await super()._m_getupdates(p, f)
        if out and self.driver is not None:
            self.driver.handed_out(out)
        return out

    def _hook(self, res: dict[str, Any], edit: bool) -> dict[str, Any]:
        if self.driver is not None:
            self.driver.bot_message(res, edit)
        return res

    def _m_sendmessage(self, p: dict[str, Any], f: dict[str, StoredFile]) -> dict[str, Any]:
        return self._hook(super()._m_sendmessage(p, f), False)

    def _m_editmessagetext(self, p: dict[str, Any], f: dict[str, StoredFile]) -> dict[str, Any]:
        return self._hook(super()._m_editmessagetext(p, f), True)

    def reset(self) -> None:
        """Forget chats, calls and files between phases (keeps the update id counter)."""
        self.calls.clear()
        self.chats.clear()
        self.files.clear()
        self.delivered.clear()
        self.callback_ids.clear()
        self._queue.clear()
        self._msg_ids.clear()
        self.peers = set()


async def serve() -> None:
    fake = BenchFake(TOKEN)
    await fake.start()
    lock = asyncio.Lock()

    async def run(request: web.Request) -> web.Response:
        body = await request.json()
        async with lock:
            driver = Driver(fake, Plan(**body))
            fake.driver = driver
            try:
                figures = await driver.run()
            finally:
                fake.driver = None
        return web.json_response(figures)

    async def reset(_request: web.Request) -> web.Response:
        fake.reset()
        return web.json_response({"ok": True})

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response({"calls": len(fake.calls), "queue": fake.pending_updates})

    handlers: dict[str, Callable[[web.Request], Any]] = {"/run": run, "/reset": reset, "/stats": stats}
    app = web.Application()
    for path, fn in handlers.items():
        app.router.add_post(path, fn)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = getattr(site, "_server", None)
    control = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    say({"ready": True, "api": fake.port, "control": control})
    try:
        await wait_stdin_closed()
    finally:
        await runner.cleanup()
        await fake.stop()


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    asyncio.run(serve())


if __name__ == "__main__":
    main()
