"""Triage: the runs listing (``cosmo-runner runs``) and its text report.

``env diff`` and ``verify`` still live in :mod:`cosmo_runner.env.diff`,
:mod:`cosmo_runner.verify` and :mod:`cosmo_runner.report_diff`.
"""
