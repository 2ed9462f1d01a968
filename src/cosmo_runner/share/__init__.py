"""Sharing a run: ``report.html`` (:mod:`.report`), an RO-Crate of the run (:mod:`.crate`)
and a CycloneDX SBOM of its environment (:mod:`.sbom`).

Everything here reads what a run recorded (its log, results and plots) and writes one
artefact; nothing re-runs an analysis or redraws a plot. jinja2, rocrate and
cyclonedx-python-lib are imported only by the module that needs them.
"""
