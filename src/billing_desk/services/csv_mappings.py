"""Saved CSV column mappings: one per bank export layout, checked by a person once, reused."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from billing_desk.db.models import CsvMappingRecord
from billing_desk.domain.csv_mappings import CsvMapping
from billing_desk.domain.errors import BadInput
from billing_desk.domain.hashing import canonical_bytes
from billing_desk.domain.roles import Permission
from billing_desk.importers.statements import csv_statement
from billing_desk.services.unit_of_work import UnitOfWork, Workspace


@dataclass(frozen=True)
class MappingInfo:
    name: str
    saved_by: str
    record: dict[str, Any]
    replaced: bool = False


def save_mapping(workspace: Workspace, record: Mapping[str, Any]) -> MappingInfo:
    """Save (or replace, by name) a mapping; it is validated before anything is written."""
    mapping = CsvMapping.from_record(record)
    stored = canonical_bytes(mapping.to_record()).decode()

    def operation(unit: UnitOfWork) -> MappingInfo:
        unit.require(Permission.IMPORT_STATEMENTS)
        row = unit.session.scalars(
            select(CsvMappingRecord).where(CsvMappingRecord.name == mapping.name)
        ).one_or_none()
        replaced = row is not None
        if row is None:
            row = CsvMappingRecord(
                name=mapping.name, record=stored, saved_at=unit.now, saved_by=unit.actor.name
            )
            unit.session.add(row)
        else:
            row.record, row.saved_at, row.saved_by = stored, unit.now, unit.actor.name
        return MappingInfo(mapping.name, unit.actor.name, mapping.to_record(), replaced)

    return workspace.write(operation, action="mapping.save")


def get_mapping(workspace: Workspace, name: str) -> CsvMapping:
    def operation(unit: UnitOfWork) -> CsvMapping:
        unit.require(Permission.READ)
        stored = unit.session.scalar(
            select(CsvMappingRecord.record).where(CsvMappingRecord.name == name)
        )
        if stored is None:
            raise BadInput(
                f"There is no CSV mapping named '{name}'; `billing-desk mapping list` shows "
                "the saved ones."
            )
        return CsvMapping.from_record(json.loads(stored))

    return workspace.read(operation)


def list_mappings(workspace: Workspace) -> list[MappingInfo]:
    def operation(unit: UnitOfWork) -> list[MappingInfo]:
        unit.require(Permission.READ)
        rows = unit.session.scalars(select(CsvMappingRecord).order_by(CsvMappingRecord.name))
        return [MappingInfo(r.name, r.saved_by, json.loads(r.record)) for r in rows]

    return workspace.read(operation)


def find_mapping(workspace: Workspace, data: bytes) -> CsvMapping | None:
    """The saved mapping that reads this CSV file (the most recently saved of those that do),
    or None: the next export of a bank whose mapping was saved is read with no change."""

    def operation(unit: UnitOfWork) -> list[str]:
        unit.require(Permission.READ)
        return list(
            unit.session.scalars(
                select(CsvMappingRecord.record).order_by(
                    CsvMappingRecord.saved_at.desc(), CsvMappingRecord.id.desc()
                )
            )
        )

    for stored in workspace.read(operation):
        try:
            mapping = CsvMapping.from_record(json.loads(stored))
        except BadInput:
            continue  # a record of an older version: `mapping save` renews it
        if csv_statement.fits(data, mapping):
            return mapping
    return None
