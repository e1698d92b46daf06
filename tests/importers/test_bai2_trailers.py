"""BAI2 group (98) and file (99) trailers, written from the BAI Cash Management Balance Reporting
Specifications Version 2: a group trailer totals every account of its group, a file trailer
every group of the file. Each trailer is one finding, shown once: on the first account of its
group, and on the first statement of the file; never once per account.
"""

from __future__ import annotations

from collections import Counter

from billing_desk.importers.statements import bai2

# Two groups; the first with two accounts. Control totals add summaries and details as written.
TWO_GROUPS = """01,BANK,CUST,240102,0800,F1,,,2/
02,CUST,BANK,1,240101,2400,USD,2/
03,111,,010,1000,,,015,1100,,/
16,195,100,0,B1,,IN/
49,2200,3/
03,222,,010,500,,,015,450,,/
16,475,50,,B2,,OUT/
49,1000,3/
98,3200,2,8/
02,CUST,BANK,1,240101,2400,USD,2/
03,333,,010,0,,,015,0,,/
49,0,2/
98,0,1,4/
99,3200,2,14/
"""


def names(text: str) -> list[Counter[str]]:
    return [Counter(check.name for check in s.checks()) for s in bai2.parse(text.encode())]


def test_each_trailer_is_checked_once() -> None:
    first, second, third = names(TWO_GROUPS)
    assert first["group control total (98)"] == 1 and first["file control total (99)"] == 1
    assert second["group control total (98)"] == 0 and second["file control total (99)"] == 0
    assert third["group control total (98)"] == 1 and third["file control total (99)"] == 0
    statements = bai2.parse(TWO_GROUPS.encode())
    assert all(check.ok for s in statements for check in s.checks())


def test_a_wrong_file_total_is_one_failure_not_one_per_account() -> None:
    broken = TWO_GROUPS.replace("99,3200,2,14/", "99,3201,2,14/")
    failures = [c for s in bai2.parse(broken.encode()) for c in s.checks() if not c.ok]
    assert [c.name for c in failures] == ["file control total (99)"]
