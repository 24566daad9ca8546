"""The message catalogues: complete Vietnamese, identical placeholders, a fresh template, and the
catalogue tool (scripts/i18n.py) itself, exercised on a small throw-away project."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from types import ModuleType

import pytest
from babel.messages.catalog import Catalog

from bot.i18n import Translator

ROOT = Path(__file__).resolve().parent.parent


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("i18n_tool", ROOT / "scripts" / "i18n.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["i18n_tool"] = module
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


@pytest.fixture(scope="module")
def template() -> Catalog:
    return tool.extract_template(ROOT)


@pytest.fixture(scope="module")
def vi() -> Catalog:
    return tool.read_catalog(tool.po_path("vi", ROOT), "vi")


# -- the real catalogues ----------------------------------------------------------------------------
def test_code_has_messages(template: Catalog) -> None:
    ids = {m.id for m in template if m.id}
    # A few msgids of the foundation must be found by the extractor (ctx.t, N_, tr(...).t in main.py).
    assert {"Principal", "My profile", "Audit log intact: {n} events checked."} <= ids


def test_every_msgid_has_a_vietnamese_translation(template: Catalog, vi: Catalog) -> None:
    missing = []
    for msg in template:
        if not msg.id:
            continue
        entry = vi.get(msg.id)
        strings = tool._strings(entry) if entry is not None else ("",)
        if entry is None or not all(s.strip() for s in strings) or entry.fuzzy:
            missing.append(tool._ids(msg)[0])
    assert missing == [], f"{len(missing)} msgids without a reviewed Vietnamese translation: {missing[:10]}"


def test_placeholders_identical_in_vietnamese(template: Catalog, vi: Catalog) -> None:
    wrong = {}
    for msg in template:
        entry = vi.get(msg.id) if msg.id else None
        if entry is None:
            continue
        expected = tool.placeholders(tool._ids(msg)[-1])
        for s in tool._strings(entry):
            if s and tool.placeholders(s) != expected and tool.placeholders(s) != tool.placeholders(tool._ids(msg)[0]):
                wrong[tool._ids(msg)[0]] = s
    assert wrong == {}


def test_check_passes_and_template_is_up_to_date() -> None:
    """The same checks as ``python scripts/i18n.py check``, in-process."""
    assert tool.problems(ROOT) == []


def test_translator_speaks_vietnamese() -> None:
    tr = Translator("vi")
    assert tr.t("Principal") == "Hiệu trưởng"
    assert tr.t("Vice principal") == "Phó hiệu trưởng"
    assert tr.t("My profile") == "Hồ sơ của tôi"
    assert tr.money(30000).replace("\xa0", " ") == "30.000 ₫"
    assert tr.long_date(date(2026, 11, 21)) == "Thứ Bảy, 21 tháng 11, 2026"
    assert tr.datetime(datetime(2026, 11, 21, 1, 30, tzinfo=UTC)) == "08:30 21/11/2026"
    assert tr.number(1234567.5) == "1.234.567,5"
    text = tr.t("Your unit is now {unit}.", unit="<Tổ 1>")
    assert text == "Tổ của anh/chị đã được đổi thành &lt;Tổ 1&gt;."


def test_english_falls_back_to_the_msgid() -> None:
    tr = Translator("en")
    assert tr.t("Principal") == "Principal"
    assert tr.t("Your unit is now {unit}.", unit="Tổ 1") == "Your unit is now Tổ 1."


# -- the tool on a throw-away project -------------------------------------------------------------
def _project(tmp_path: Path, code: str) -> Path:
    (tmp_path / "bot").mkdir()
    (tmp_path / "bot" / "x.py").write_text(code, encoding="utf-8")
    shutil.copy(ROOT / "babel.cfg", tmp_path / "babel.cfg")
    return tmp_path


def _update(root: Path) -> None:
    template = tool.extract_template(root)
    tool.write_template(template, root)
    tool.update_catalogs(template, root)


CODE = '''
def f(ctx, tr, n):
    ctx.t("Hello {name}", name="x")
    tr.tn("{n} file", "{n} files", n)
    LABEL = N_("Teacher")
    ctx.t(LABEL)
'''


def test_tool_finds_missing_translations_and_merges_pending(tmp_path: Path) -> None:
    root = _project(tmp_path, CODE)
    assert any("messages.pot is missing" in p for p in tool.problems(root))
    _update(root)
    found = tool.problems(root)
    assert sorted(p.split(" for ")[-1].split(" (")[0] for p in found) == ["'Hello {name}'", "'Teacher'",
                                                                          "'{n} file'"]

    pending = tool.pending_dir(root)
    pending.mkdir(parents=True)
    (pending / "a.json").write_text(json.dumps({
        "Hello {name}": "Xin chào {ten}",        # wrong placeholder: stays pending
        "Teacher": "Giáo viên",
        "{n} file": "{n} tệp",
        "Not in the code": "Không có",           # unknown msgid: stays pending
    }, ensure_ascii=False), encoding="utf-8")
    report = tool.merge_pending(root)
    assert any("placeholders differ" in line for line in report)
    left = json.loads((pending / "a.json").read_text(encoding="utf-8"))
    assert left == {"Hello {name}": "Xin chào {ten}", "Not in the code": "Không có"}
    assert [p for p in tool.problems(root) if "no Vietnamese translation" in p] == [
        "locales/vi/LC_MESSAGES/messages.po: no Vietnamese translation for 'Hello {name}' (bot/x.py:3)"]

    (pending / "a.json").write_text(json.dumps({"Hello {name}": "Xin chào {name}"}, ensure_ascii=False),
                                    encoding="utf-8")
    tool.merge_pending(root)
    assert not (pending / "a.json").exists()
    assert tool.problems(root) == []

    # The translations survive an update; a wrong translation typed into the .po is reported.
    _update(root)
    assert tool.problems(root) == []
    po = tool.po_path("vi", root)
    po.write_text(po.read_text(encoding="utf-8").replace("Xin chào {name}", "Xin chào {ten}"), encoding="utf-8")
    assert any("placeholders differ: missing {name}; unknown {ten}" in p for p in tool.problems(root))


def test_tool_reports_a_stale_template_and_runtime_msgids(tmp_path: Path) -> None:
    root = _project(tmp_path, 'def f(ctx):\n    return ctx.t("Hello")\n')
    _update(root)
    (root / "bot" / "x.py").write_text('def f(ctx, v):\n    return ctx.t("Hello"), ctx.t("Bye"), '
                                       'ctx.t(f"Hi {v}")\n', encoding="utf-8")
    found = tool.problems(root)
    assert any("messages.pot is out of date" in p for p in found)
    assert "  new in the code: 'Bye'" in found
    assert any(p.startswith("bot/x.py:2: the msgid of t() is built at run time") for p in found)


def test_tool_output_is_deterministic(tmp_path: Path) -> None:
    root = _project(tmp_path, CODE)
    _update(root)
    files = [tool.pot_path(root), tool.po_path("vi", root), tool.po_path("en", root)]
    before = [f.read_bytes() for f in files]
    _update(root)
    assert [f.read_bytes() for f in files] == before
    pot = before[0].decode("utf-8")
    assert "bot/x.py:" not in pot and "#: bot/x.py" in pot  # file names, no line numbers
    assert "POT-Creation-Date: 2026-01-01 00:00+0000" in pot and "Generated-By" not in pot
