"""``main.py import-cameras``: Vietnamese headers, re-import by code, bad rows import nothing."""

from __future__ import annotations

from openpyxl import Workbook
from sqlmodel import select

from bot.flows.footage.cameras import import_cameras_file
from bot.flows.footage.models import Camera
from bot.i18n import Translator
from tests.helpers import make_school


def _xlsx(path, rows):
    wb = Workbook()
    ws = wb.active
    ws.append(["Danh sách camera trường"])  # a title row above the header
    for r in rows:
        ws.append(r)
    wb.save(path)
    return str(path)


def test_import_update_and_refuse_bad_rows(db, tmp_path):
    db.run_sync(lambda s: make_school(s))
    tr = Translator("vi")
    f = _xlsx(tmp_path / "cam.xlsx", [["Mã", "Tên / Vị trí", "Đơn vị phụ trách", "Nguồn ghi hình"],
                                      ["cong", "Cổng chính", "Tổ bảo vệ", "frigate:/srv/frigate"],
                                      ["san", "Sân trường", "", "pattern:/srv/nvr:{camera}/%Y%m%d/%H%M%S.mp4"]])
    rep = import_cameras_file(db, f, school_name=None, tr=tr)
    assert rep.ok and rep.created == 2, rep.render(tr)
    csv = tmp_path / "cam.csv"
    csv.write_text("code,name,unit,source,status\ncong,Cổng chính (mới),Tổ bảo vệ,,ngừng sử dụng\n",
                   encoding="utf-8-sig")
    rep = import_cameras_file(db, str(csv), school_name=None, tr=tr)
    assert rep.ok and rep.updated == 1
    cams = db.run_sync(lambda s: {c.code: c for c in s.exec(select(Camera))})
    assert cams["cong"].name == "Cổng chính (mới)" and cams["cong"].status == "retired"
    assert cams["cong"].source == "frigate:/srv/frigate"  # an empty cell keeps the source
    bad = tmp_path / "bad.csv"
    bad.write_text("Mã,Tên\nx1,Nhà xe\n,Không mã\nx1,Trùng\n", encoding="utf-8")
    rep = import_cameras_file(db, str(bad), school_name=None, tr=tr)
    text = rep.render(tr)
    assert not rep.ok and "3" in text and "4" in text
    assert db.run_sync(lambda s: s.exec(select(Camera).where(Camera.code == "x1")).first()) is None
    rep = import_cameras_file(db, str(tmp_path / "missing.csv"), school_name=None, tr=tr)
    assert not rep.ok
