"""``main.py import-equipment``: Vietnamese and English headers, CSV and XLSX, codes that never change,
nothing deleted, stock changes only through recorded changes, a bad file imports nothing."""

from __future__ import annotations

import unicodedata
from datetime import date, datetime

from openpyxl import Workbook
from sqlmodel import select

import main
from bot.flows.equipment.catalogue import import_equipment_file, parse_quantity
from bot.flows.equipment.models import EquipmentItem
from bot.i18n import Translator
from storage import audit
from tests.helpers import make_school

TR = Translator("vi")


def _items(db) -> dict[str, EquipmentItem]:
    return db.run_sync(lambda s: {i.code: i for i in s.exec(select(EquipmentItem))})


def _xlsx(path, rows):
    wb = Workbook()
    ws = wb.active
    ws.append(["DANH MỤC THIẾT BỊ DẠY HỌC — NĂM HỌC 2026-2027"])  # a title above the header
    ws.append([])
    for r in rows:
        ws.append(r)
    wb.save(path)
    return str(path)


def test_vietnamese_xlsx_then_english_csv_update_by_code(db, tmp_path):
    db.run_sync(lambda s: make_school(s))
    f = _xlsx(tmp_path / "thiet_bi.xlsx", [
        ["STT", "Mã thiết bị", "Tên thiết bị", "Môn học", "Phòng", "Số lượng", "Tình trạng", "Ngày nhập"],
        [1, "TB-0001", "Máy chiếu Epson", "CNTT", "Phòng Tin học", 2, "Tốt", datetime(2024, 9, 5)],
        [2, "TB-0002", "Bộ lắp ghép kĩ thuật", "Công nghệ", "Kho thiết bị", 20, "Hỏng 3", "05/09/2024"],
        [3, "TB-0003", "Quả địa cầu", "Lịch sử và Địa lí", "Kho thiết bị", 4, "Hỏng", "2023"],
        [4, "TB-0004", "Đàn organ cũ", "Âm nhạc", "Phòng Âm nhạc", 1, "Thanh lý", ""],
    ])
    rep = import_equipment_file(db, f, school_name=None, tr=TR)
    assert rep.ok and rep.created == 4, rep.render(TR)
    items = _items(db)
    assert (items["TB-0001"].quantity, items["TB-0001"].damaged, items["TB-0001"].is_it) == (2, 0, True)
    assert items["TB-0001"].acquired_on == date(2024, 9, 5)
    assert (items["TB-0002"].damaged, items["TB-0002"].is_it) == (3, False)
    assert items["TB-0003"].damaged == 4 and items["TB-0003"].acquired_on == date(2023, 1, 1)
    assert (items["TB-0004"].status, items["TB-0004"].quantity) == ("disposed", 0)

    # English headers, NFD text, a different case of the code: the item is updated, not duplicated;
    # the quantity in the file differs, which is reported but not applied; TB-0004 is missing: kept.
    csv = tmp_path / "equipment.csv"
    nfd = unicodedata.normalize("NFD", "Máy chiếu Epson EB-X06")
    csv.write_text("code,name,category,room,quantity,condition,date acquired\n"
                   f"tb-0001,{nfd},CNTT,Phòng Tin học,3,Tốt,2024-09-05\n"
                   "TB-0002,Bộ lắp ghép kĩ thuật,Công nghệ,Kho thiết bị,20,Hỏng 3,05/09/2024\n"
                   "TB-0009,Loa kéo,Chung,Phòng Hội đồng,2,Tốt,\n", encoding="utf-8-sig")
    rep = import_equipment_file(db, str(csv), school_name=None, tr=TR)
    text = rep.render(TR)
    assert rep.ok and rep.created == 1 and rep.updated == 1 and rep.unchanged == 1, text
    assert "TB-0001" in text and "số lượng 2 trong danh mục, 3 trong tệp" in text
    assert "TB-0003" in text and "TB-0004" in text  # listed as missing, not deleted
    items = _items(db)
    assert set(items) == {"TB-0001", "TB-0002", "TB-0003", "TB-0004", "TB-0009"}
    assert items["TB-0001"].code == "TB-0001" and items["TB-0001"].quantity == 2  # code and stock unchanged
    assert items["TB-0001"].name == "Máy chiếu Epson EB-X06"
    # --update-stock applies the stock columns (a first load of a school's books), audited.
    rep = import_equipment_file(db, str(csv), school_name=None, tr=TR, update_stock=True)
    assert rep.ok and rep.stock_updated == 1
    assert _items(db)["TB-0001"].quantity == 3
    events = db.run_sync(lambda s: list(audit.events(s, action="equipment.imported")))
    assert len(events) == 3 and db.run_sync(lambda s: audit.verify(s)).ok


def test_bad_rows_import_nothing_and_name_excel_rows(db, tmp_path):
    db.run_sync(lambda s: make_school(s))
    f = _xlsx(tmp_path / "bad.xlsx", [
        ["Mã", "Tên thiết bị", "Số lượng", "Tình trạng"],
        ["A1", "Bảng nhóm", 10, "Tốt"],
        ["", "Không mã", 1, "Tốt"],
        ["A1", "Trùng mã", 1, "Tốt"],
        ["A2", "Số âm", -3, "Tốt"],
        ["A3", "Tình trạng lạ", 2, "Đẹp"],
        ["A4", "Hỏng quá số", 2, "Hỏng 5"],
    ])
    rep = import_equipment_file(db, f, school_name=None, tr=TR)
    text = rep.render(TR)
    assert not rep.ok
    for row in ("Dòng 5", "Dòng 6", "Dòng 7", "Dòng 8", "Dòng 9"):
        assert row in text, text
    assert "Dòng 4" not in text
    assert _items(db) == {}
    rep = import_equipment_file(db, str(tmp_path / "missing.xlsx"), school_name=None, tr=TR)
    assert not rep.ok
    nohead = tmp_path / "nohead.csv"
    nohead.write_text("a,b\n1,2\n", encoding="utf-8")
    assert "Mã" in import_equipment_file(db, str(nohead), school_name=None, tr=TR).render(TR)


def test_demo_seed_is_idempotent(db):
    from bot.flows.equipment.catalogue import demo_seed

    school = db.run_sync(lambda s: make_school(s))
    assert db.run_sync(lambda s: demo_seed(s, s.merge(school))) == 10
    assert db.run_sync(lambda s: demo_seed(s, s.merge(school))) == 0
    assert _items(db)["TB-0001"].is_it and not _items(db)["TB-0005"].is_it


def test_parse_quantity_forgiving():
    assert parse_quantity("12") == 12 and parse_quantity("12.0") == 12 and parse_quantity("1.000") == 1000
    assert parse_quantity("3 cái") == 3 and parse_quantity("-3") is None and parse_quantity("ba") is None


def test_cli_import_equipment(sqlite_db, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    f = tmp_path / "tb.csv"
    f.write_text("Mã;Tên thiết bị;Phòng;Số lượng\nX-1;Bàn học sinh;Lớp 1A;35\n", encoding="utf-8")
    assert main.main(["import-equipment", str(f), "--school", "TH Bùi Thanh Khiết"]) == 0
    out = capsys.readouterr().out
    assert "thêm 1 thiết bị" in out
    f.write_text("Mã;Tên thiết bị\n;Thiếu mã\n", encoding="utf-8")
    assert main.main(["import-equipment", str(f)]) == 1
