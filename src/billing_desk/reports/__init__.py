"""Printed reports (ReportLab): one module per report on the shared page template in
`template.py`. Reports render the plain dataclasses of `services.report_data`; they never open a
session or import the database layer."""
