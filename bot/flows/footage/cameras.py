"""Camera registry import (``python main.py import-cameras FILE``): CSV or XLSX with columns
``code, name, unit, source`` — or the Vietnamese headers ``Mã, Tên / Vị trí, Đơn vị phụ trách,
Nguồn ghi hình``. Codes are stable; re-importing updates by code and never deletes (a ``status``
column may retire a camera). All rows are checked first; a bad file imports nothing."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import Session, select

from bot.flows.footage.models import Camera
from bot.i18n import Translator
from bot.text import clean, fold
from storage import audit
from storage.db import Database
from storage.models import School, utcnow
from storage.staff_import import FileProblem, read_table

HEADERS = {
    "code": ("code", "ma", "ma camera", "ma so"),
    "name": ("name", "ten", "vi tri", "ten / vi tri", "ten camera", "khu vuc"),
    "unit": ("unit", "don vi", "don vi phu trach", "bo phan phu trach", "phu trach"),
    "source": ("source", "recording source", "nguon", "nguon ghi hinh", "nguon ghi"),
    "status": ("status", "trang thai"),
}
STATUSES = {"active": "active", "dang dung": "active", "hoat dong": "active", "retired": "retired",
            "ngung": "retired", "ngung su dung": "retired", "hong": "broken", "broken": "broken"}


@dataclass
class CameraReport:
    created: int = 0
    updated: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self, tr: Translator) -> str:
        if self.problems:
            return "\n".join([tr.t("Nothing was imported. Please fix these problems:"), *self.problems])
        return tr.t("Cameras imported: {created} new, {updated} updated.", created=self.created,
                    updated=self.updated)


def import_cameras_file(db: Database, path: str, *, school_name: str | None, tr: Translator) -> CameraReport:
    report = CameraReport()
    try:
        tables = read_table(path)
    except FileProblem as exc:
        report.problems.append(exc.problem.render(tr))
        return report
    table: list[tuple[int, list[str]]] = []
    header_row, columns = -1, {}
    for candidate in tables:
        for i, (_rownum, cells) in enumerate(candidate[:10]):
            found = {key: j for j, c in enumerate(cells) for key, names in HEADERS.items()
                     if fold(str(c)) in names}
            if "code" in found and "name" in found:
                header_row, columns, table = i, found, candidate
                break
        if header_row >= 0:
            break
    if header_row < 0:
        report.problems.append(tr.t("No header row with at least the columns code and name (Mã, Tên) was found."))
        return report
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for i, cells in table[header_row + 1:]:
        get = {k: clean(str(cells[j])) if j < len(cells) and cells[j] is not None else "" for k, j in columns.items()}
        if not any(get.values()):
            continue
        code = get.get("code", "")
        if not code or not get.get("name"):
            report.problems.append(tr.t("Row {row}: the code and the name are required.", row=i))
            continue
        if code.casefold() in seen:
            report.problems.append(tr.t("Row {row}: the code {code} appears twice.", row=i, code=code))
            continue
        seen.add(code.casefold())
        status = get.get("status", "")
        if status and fold(status) not in STATUSES:
            report.problems.append(tr.t("Row {row}: unknown status “{status}”.", row=i, status=status))
            continue
        get["status"] = STATUSES.get(fold(status), "active") if status else "active"
        source = get.get("source", "")
        if source:
            from media.recordings import SourceError, source_from_string

            try:
                source_from_string(source)
            except SourceError:
                report.problems.append(tr.t("Row {row}: the recording source is not understood "
                                            "(use frigate:, pattern: or nvr:).", row=i))
                continue
        rows.append(get)
    if not rows and not report.problems:
        report.problems.append(tr.t("The file has no camera rows."))
    if report.problems:
        return report

    def apply(s: Session) -> None:
        school = _school(s, school_name)
        for row in rows:
            cam = s.exec(select(Camera).where(Camera.school_id == school.id, Camera.code == row["code"])).first()
            if cam is None:
                cam = Camera(school_id=school.id or 0, code=row["code"], name=row["name"])
                report.created += 1
            else:
                report.updated += 1
            cam.name, cam.unit = row["name"], row.get("unit", "") or cam.unit
            cam.source = row.get("source", "") or cam.source
            cam.status, cam.updated_at = row["status"], utcnow()
            s.add(cam)
        audit.record(s, action="cameras.imported", school_id=school.id, subject=f"school:{school.id}",
                     details={"created": report.created, "updated": report.updated})

    try:
        db.run_sync(apply)
    except NoSchool:
        report.problems.append(tr.t("Name the school with --school (the database holds several schools, or none)."))
    return report


class NoSchool(Exception):
    pass


def _school(s: Session, name: str | None) -> School:
    schools = list(s.exec(select(School)))
    if name:
        for sc in schools:
            if fold(sc.name) == fold(name):
                return sc
        school = School(name=clean(name))
        s.add(school)
        s.flush()
        return school
    if len(schools) == 1:
        return schools[0]
    raise NoSchool()
