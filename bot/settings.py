"""Typed per-school settings of the workflows (``School.settings``, a JSON column).

Each workflow declares its settings once, as a :class:`WorkflowSettings` model in its package's
``settings.py`` (defaults, bounds, and a title and help as catalogue msgids), and names it in its
``WORKFLOW`` (``settings=``). The model's ``section`` is its key in ``School.settings``
(``School.settings["incidents"]``); a field is one setting, ``incidents.urgent_escalate_minutes``.

* **Reading** (:meth:`WorkflowSettings.load`, :meth:`WorkflowSettings.of`): every stored value is
  checked on its own; a bad one (``"abc"`` for a number of minutes) falls back to that setting's
  default, is reported as a :class:`SettingProblem` naming the setting and logged — a step never sees
  an exception because of what was stored.
* **Writing** (:func:`save`): only the settings that were stored or changed are written (a default
  stays a default when the code's default changes), keys this version does not know are kept, and
  the school gets a new dict so the JSON column sees the change.
* **The command line** (``python main.py settings show|set``): :func:`describe` lists every setting
  with its value, default and label; :func:`set_value` parses a typed value (numbers, yes/no,
  lists, JSON) and validates it, returning a message instead of raising.

This module is the framework's: it imports no workflow (the models come from the registry)."""

from __future__ import annotations

import json
import logging
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from bot.i18n import N_
from bot.text import clean, fold

if TYPE_CHECKING:
    from sqlmodel import Session

    from bot.i18n import Translator
    from storage.models import School

log = logging.getLogger(__name__)

#: Problems already logged (school id, setting, stored value): a bad value read at every step or
#: scheduler tick is logged once, not a thousand times.
_LOGGED: set[tuple[int | None, str, str]] = set()
_LOGGED_MAX = 1000


@dataclass(frozen=True, slots=True)
class SettingProblem:
    """A stored value that could not be used (its default is used instead)."""

    key: str  # "incidents.urgent_escalate_minutes" ("incidents" when the whole section is unusable)
    value: Any
    error: ErrorDetails | None = None  # pydantic's
    reason: str = ""  # else a msgid

    def __str__(self) -> str:
        reason = self.error["msg"] if self.error else (self.reason or "must be a table of settings")
        return f"{self.key}: {reason} (stored {self.value!r}; the default is used)"

    def text(self, tr: Translator) -> str:
        """The problem in the reader's language."""
        reason = (error_text(tr, self.error) if self.error
                  else tr.t(self.reason or N_("must be a table of settings (a JSON object)")))
        return tr.t("{key}: the stored value {value} cannot be used ({reason}); the default is used.",
                    key=self.key, value=_shown(self.value), reason=reason)


class WorkflowSettings(BaseModel):
    """A workflow's per-school settings. Subclasses set ``section`` (the key in ``School.settings``)
    and declare fields with a default, bounds, and ``title`` / ``description`` msgids (``N_``).

    Stored values are JSON, so fields are strict (``"5"`` is not a number of minutes, ``"no"`` is not
    ``false``); a field that accepted looser values before says ``strict=False`` itself."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    #: the key in ``School.settings``
    section: ClassVar[str] = ""
    #: field → an older top-level key of ``School.settings`` still read when the field is not stored
    #: (and dropped when the section is saved)
    legacy_keys: ClassVar[Mapping[str, str]] = {}

    # -- reading -------------------------------------------------------------------------------
    @classmethod
    def stored(cls, school: School | None) -> Any:
        """What the school stored for this section (with the legacy keys folded in), as stored."""
        everything = (school.settings or {}) if school is not None else {}
        raw = everything.get(cls.section, {})
        if raw is None:
            raw = {}
        if isinstance(raw, dict) and cls.legacy_keys:
            raw = dict(raw)
            for name, old in cls.legacy_keys.items():
                if raw.get(name) is None and everything.get(old) is not None:
                    raw[name] = everything[old]
        return raw

    @classmethod
    def from_raw(cls, raw: Any) -> tuple[Self, list[SettingProblem]]:
        """The model from stored values, checked one setting at a time: a bad value falls back to
        its default and is reported. ``None`` means "not set"."""
        if not isinstance(raw, Mapping):
            return cls(), [SettingProblem(cls.section, raw)]
        good: dict[str, Any] = {}
        problems: list[SettingProblem] = []
        for name in cls.model_fields:
            value = raw.get(name)
            if value is None:
                continue
            try:
                cls.model_validate({name: value})
            except ValidationError as exc:
                problems.append(SettingProblem(f"{cls.section}.{name}", value, exc.errors(include_url=False)[0]))
                continue
            good[name] = value
        return cls.model_validate(good), problems + cls.partial_problems(raw)

    @classmethod
    def partial_problems(cls, raw: Mapping[str, Any]) -> list[SettingProblem]:
        """Problems inside a stored value that was still used in part (a model whose validator
        drops bad entries reports them here); none by default."""
        return []

    @classmethod
    def load(cls, school: School | None) -> tuple[Self, list[SettingProblem]]:
        """The school's settings (defaults where nothing, or nothing usable, is stored) and the
        problems found; each problem is logged as a warning (once). Never raises."""
        model, problems = cls.from_raw(cls.stored(school))
        school_id = school.id if school is not None else None
        for p in problems:
            mark = (school_id, p.key, repr(p.value)[:200])
            if mark not in _LOGGED:
                if len(_LOGGED) >= _LOGGED_MAX:
                    _LOGGED.clear()
                _LOGGED.add(mark)
                log.warning("school %s: setting %s", school_id, p)
        return model, problems

    @classmethod
    def of(cls, school: School | None) -> Self:
        """The school's settings, for a step or a job (problems are logged by :meth:`load`)."""
        return cls.load(school)[0]

    def updated(self, **changes: Any) -> Self:
        """A copy with ``changes`` validated (raises :class:`ValidationError`); the settings that were
        stored, plus the changed ones, are what :func:`save` writes."""
        return self.model_validate({**self.model_dump(include=set(self.model_fields_set)), **changes})

    # -- describing ----------------------------------------------------------------------------
    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every setting's default, as stored (JSON)."""
        return cls().model_dump(mode="json")


def save(school: School, model: WorkflowSettings) -> None:
    """Write the settings that were stored or changed (``model_fields_set``) back into the school's
    section, keeping keys this version does not know; a new dict, so the JSON column is seen as
    changed. Legacy top-level keys of the section are dropped (their values are now in it)."""
    cls = type(model)
    everything = dict(school.settings or {})
    area = everything.get(cls.section)
    area = dict(area) if isinstance(area, dict) else {}
    area.update(model.model_dump(mode="json", include=set(model.model_fields_set)))
    everything[cls.section] = area
    for old in cls.legacy_keys.values():
        everything.pop(old, None)
    school.settings = everything


# -- listing and changing (the command line, the console) ---------------------------------------
@dataclass(frozen=True, slots=True)
class SettingInfo:
    """One setting of one school, for ``settings show``."""

    key: str  # "incidents.urgent_escalate_minutes"
    value: Any  # as stored (JSON)
    default: Any
    title: str  # msgid
    description: str  # msgid
    problem: SettingProblem | None = None

    @property
    def is_default(self) -> bool:
        return bool(self.value == self.default)


def describe(models: Mapping[str, type[WorkflowSettings]], school: School | None) -> list[SettingInfo]:
    """Every setting of every workflow (sorted by workflow, then in declaration order)."""
    out: list[SettingInfo] = []
    for wf in sorted(models):
        cls = models[wf]
        model, problems = cls.load(school)
        by_key = {p.key: p for p in problems}
        current = model.model_dump(mode="json")
        defaults = cls.defaults()
        for name, field in cls.model_fields.items():
            key = f"{wf}.{name}"
            out.append(SettingInfo(key, current[name], defaults[name], field.title or name,
                                   field.description or "", by_key.get(key)))
    return out


def find_setting(models: Mapping[str, type[WorkflowSettings]], key: str) -> tuple[type[WorkflowSettings], str] | None:
    """``incidents.urgent_escalate_minutes`` → (the incidents model, the field name); None if unknown."""
    wf, _, name = key.strip().partition(".")
    cls = models.get(wf)
    if cls is None or name not in cls.model_fields:
        return None
    return cls, name


@dataclass(frozen=True, slots=True)
class SetResult:
    ok: bool
    message: str  # translated
    old: Any = None
    new: Any = None


def set_value(school: School, key: str, raw_text: str, *, models: Mapping[str, type[WorkflowSettings]],
              tr: Translator) -> SetResult:
    """Parse ``raw_text`` for the setting ``key``, validate it and save it in the school's settings.
    An unknown key or a bad value returns ``ok=False`` and a message; nothing is saved then."""
    found = find_setting(models, key)
    if found is None:
        return SetResult(False, tr.t("Unknown setting “{key}”. Known settings: {known}. See them with: "
                                     "python main.py settings show", key=key,
                                     known=", ".join(f"{wf}.{n}" for wf in sorted(models)
                                                     for n in models[wf].model_fields)))
    cls, name = found
    key = f"{cls.section}.{name}"
    annotation = cls.model_fields[name].annotation
    try:
        value = parse_text(annotation, raw_text)
    except ValueError as exc:
        return SetResult(False, tr.t("{key}: {reason}. Nothing was saved.", key=key, reason=tr.t(str(exc))))
    try:
        cls.model_validate({name: value})
    except ValidationError as exc:
        return SetResult(False, tr.t("{key}: {reason}. Nothing was saved.", key=key,
                                     reason=error_text(tr, exc.errors(include_url=False)[0])))
    model, _ = cls.load(school)
    old = model.model_dump(mode="json")[name]
    new_model = model.updated(**{name: value})
    save(school, new_model)
    new = new_model.model_dump(mode="json")[name]
    return SetResult(True, tr.t("{key} = {value} (was {old}).", key=key, value=_shown(new), old=_shown(old)),
                     old, new)


# -- parsing typed values -----------------------------------------------------------------------
_TRUE = frozenset({"true", "yes", "y", "1", "on", "co", "bat", "dung"})
_FALSE = frozenset({"false", "no", "n", "0", "off", "khong", "tat", "sai"})


def parse_text(annotation: Any, raw: str) -> Any:
    """A value typed on the command line, for a field of type ``annotation``: a whole number; yes or
    no (``true``/``false``, ``có``/``không``); a list as ``a, b, c`` or JSON; a table as JSON; text as
    typed. Raises ValueError with a msgid when the text cannot be read."""
    text = clean(raw)
    origin = typing.get_origin(annotation)
    if annotation is bool:
        word = fold(text)
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(N_("must be yes or no (true/false, có/không)"))
    if annotation is int:
        digits = text.replace("_", "").replace(" ", "")
        if digits.lstrip("+-").isdigit() and digits.isascii():
            return int(digits)
        raise ValueError(N_("must be a whole number"))
    if origin in (list, tuple, set, Sequence) or annotation in (list, tuple):
        if text.startswith("["):
            return _json(text)
        if not text or fold(text) in ("khong", "none", "-"):
            return []
        item = (typing.get_args(annotation) or (str,))[0]
        if item is not str:
            raise ValueError(N_("must be a JSON list, for example [1, 2]"))
        return [part for part in (clean(p) for p in text.split(",")) if part]
    if origin in (dict, Mapping) or annotation is dict:
        if not text.startswith("{"):
            raise ValueError(N_("must be a table (a JSON object)"))
        return _json(text)
    if origin is typing.Union or origin is types.UnionType:
        if text.startswith(("[", "{")):
            return _json(text)
    return text


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(N_("is not valid JSON")) from None


# -- messages -----------------------------------------------------------------------------------
#: pydantic error type → msgid (placeholders from the error's ``ctx``)
_ERRORS: dict[str, str] = {
    "int_type": N_("must be a whole number"),
    "int_parsing": N_("must be a whole number"),
    "int_from_float": N_("must be a whole number"),
    "bool_type": N_("must be yes or no (true/false, có/không)"),
    "bool_parsing": N_("must be yes or no (true/false, có/không)"),
    "string_type": N_("must be text"),
    "list_type": N_("must be a list"),
    "dict_type": N_("must be a table (a JSON object)"),
    "greater_than": N_("must be greater than {gt}"),
    "greater_than_equal": N_("must be at least {ge}"),
    "less_than": N_("must be less than {lt}"),
    "less_than_equal": N_("must be at most {le}"),
    "literal_error": N_("must be one of: {expected}"),
    "too_long": N_("has too many items (at most {max_length})"),
    "too_short": N_("has too few items (at least {min_length})"),
    "string_too_long": N_("is too long (at most {max_length} characters)"),
}


def error_text(tr: Translator, error: ErrorDetails) -> str:
    """A validation error in the reader's language (the setting's own checks raise
    ``PydanticCustomError("setting", msgid)``)."""
    ctx = dict(error.get("ctx") or {})
    where = ".".join(str(p) for p in error.get("loc", ())[1:])
    prefix = f"{where}: " if where else ""
    if error["type"] == "setting":
        return prefix + tr.t(str(error["msg"]))
    msgid = _ERRORS.get(error["type"])
    if msgid is None:
        return prefix + str(error["msg"])
    return prefix + tr.t(msgid, **{k: v for k, v in ctx.items() if isinstance(v, int | float | str)})


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# -- the command line ---------------------------------------------------------------------------
def show_lines(school: School, models: Mapping[str, type[WorkflowSettings]], tr: Translator) -> list[str]:
    """``python main.py settings show``: every setting with its value, default and label."""
    lines = [tr.t("Settings of {school} (change one with: python main.py settings set KEY VALUE):",
                  school=school.name)]
    section = ""
    for info in describe(models, school):
        wf = info.key.split(".", 1)[0]
        if wf != section:
            section = wf
            lines.append("")
        state = tr.t("default") if info.is_default else tr.t("default: {value}", value=_shown(info.default))
        lines.append(f"{info.key} = {_shown(info.value)}  ({state})")
        lines.append(f"    {tr.t(info.title)}" + (f" — {tr.t(info.description)}" if info.description else ""))
        if info.problem is not None:
            lines.append("    ⚠ " + info.problem.text(tr))
    return lines


def change(session: Session, school: School, key: str, raw_text: str, *,
           models: Mapping[str, type[WorkflowSettings]], tr: Translator) -> SetResult:
    """``python main.py settings set KEY VALUE``: :func:`set_value`, then the audit event."""
    from storage import audit

    result = set_value(school, key, raw_text, models=models, tr=tr)
    if result.ok:
        session.add(school)
        audit.record(session, action="settings.changed", school_id=school.id, channel="cli",
                     subject=f"setting:{key.strip()}", details={"old": result.old, "new": result.new})
    return result
