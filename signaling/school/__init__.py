"""Timetabled lessons, attendance and link quality per classroom, reports and webhooks.

timetable.py, attendance.py, quality.py, report.py (pure: time is an argument) · tracker.py (a room's lesson
followed live: presence, SFU samples, written every few seconds) · timetable_api.py, report_api.py (HTTP) ·
webhooks.py (signed, retried, bounded delivery) · setup.py (wires them into the app).
"""
