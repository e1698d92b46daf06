"""Browsing the audit trail: keyset pages that neither repeat nor skip an entry in either order,
filters that narrow on the server, an entry's values compared field by field, a range that ends
before it starts refused in one sentence, and the first page of a filter recorded as a read."""

from __future__ import annotations

from datetime import date

import pytest

from billing_desk.domain.errors import BadInput
from billing_desk.services.audit_browser import (
    AuditFilter,
    audit_entry,
    audit_page,
    audit_window,
    entry_of_sequence,
)
from tests.conftest import Database
from tests.services.test_archive import billed  # noqa: F401  (the fixture)


def _all(database: Database, wanted: AuditFilter, newest_first: bool) -> list[int]:
    reader = database.workspace("auditor")
    seen: list[int] = []
    after = None
    while True:
        page = audit_page(reader, wanted, after=after, newest_first=newest_first, limit=7)
        seen += [r.entry_id for r in page]
        if len(page) < 7:
            return seen
        after = page[-1].entry_id


def test_pages_neither_repeat_nor_skip(billed: Database) -> None:  # noqa: F811
    # A facility's entries (the reads of the log, recorded as they happen, belong to none).
    wanted = AuditFilter(facility="STMARY")
    newest = _all(billed, wanted, True)
    oldest = _all(billed, wanted, False)
    assert len(newest) > 14, "more than two pages"
    assert newest == sorted(newest, reverse=True) and len(set(newest)) == len(newest)
    assert oldest == list(reversed(newest))


def test_filters_narrow_and_values_compare(billed: Database) -> None:  # noqa: F811
    reader = billed.workspace("auditor")
    invoices = audit_page(reader, AuditFilter(entity_type="invoice", facility="STMARY"))
    assert invoices and all(r.entity_type == "invoice" for r in invoices)
    assert all(r.facility == "STMARY" for r in invoices)
    created = audit_entry(reader, invoices[-1].entry_id)
    assert created.kind == "created"
    assert {f.name for f in created.changed} >= {"number", "total_minor", "status"}
    assert all(f.before is None for f in created.changed)
    assert any(r.entry_id == created.row.entry_id for r in created.request)
    found = audit_page(reader, AuditFilter(text="STMARY-000001"))
    assert any(r.entity_type == "invoice" for r in found)
    nothing = audit_page(reader, AuditFilter(user="nobody-at-all"))
    assert nothing == []


def test_a_backwards_range_is_refused(billed: Database) -> None:  # noqa: F811
    reader = billed.workspace("auditor")
    with pytest.raises(BadInput, match=r"ends .* before it starts"):
        audit_page(reader, AuditFilter(since=date(2026, 6, 2), until=date(2026, 6, 1)))


def test_the_first_page_of_a_filter_is_recorded_as_a_read(billed: Database) -> None:  # noqa: F811
    reader = billed.workspace("auditor")
    audit_page(reader, AuditFilter(entity_type="payment"))
    reads = audit_page(reader, AuditFilter(action="audit.read_log"))
    assert reads and reads[0].user == "auditor"
    before = len(audit_page(reader, AuditFilter(action="audit.read_log"), limit=1000))
    audit_page(reader, AuditFilter(action="audit.read_log"), after=reads[0].entry_id)
    after = len(audit_page(reader, AuditFilter(action="audit.read_log"), limit=1000))
    assert after == before + 1, "the next page is not a new read; the new first page is"


def test_windows_around_a_place_agree_with_the_pages(billed: Database) -> None:  # noqa: F811
    reader = billed.workspace("auditor")
    everything = AuditFilter()
    newest = _all(billed, everything, True)
    # Around a sealed sequence: half a page before it (in the list's order), a page from it.
    middle = newest[len(newest) // 2]
    sequence = next(r.sequence for r in audit_page(reader, everything, after=middle + 1, limit=1))
    assert sequence is not None
    window = audit_window(reader, everything, sequence=sequence, limit=10)
    ids = [r.entry_id for r in window.rows]
    assert window.selected == middle and middle in ids
    start = newest.index(ids[0])
    assert newest[start : start + len(ids)] == ids, "a window is a slice of the list"
    assert window.more_before and window.more_after and window.note is None
    # The far end of a newest-first list is the log's first entry, oldest last.
    end = audit_window(reader, everything, at_end=True, limit=10)
    assert [r.entry_id for r in end.rows] == newest[-10:]
    assert end.more_before and not end.more_after
    # An entry the filter leaves out is shown among all entries, with a note.
    payments = AuditFilter(entity_type="payment")
    outside = next(r for r in audit_page(reader, everything) if r.entity_type != "payment")
    shown = audit_window(reader, payments, entry_id=outside.entry_id, limit=10)
    assert shown.wanted == AuditFilter() and shown.selected == outside.entry_id
    assert shown.note is not None and "filters were cleared" in shown.note
    with pytest.raises(BadInput, match="there is no sequence"):
        audit_window(reader, everything, sequence=10**9)
    assert entry_of_sequence(reader, sequence) == middle
