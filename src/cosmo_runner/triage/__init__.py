"""Triage: what a user runs after a run, to understand or reproduce it.

- :mod:`.verify`: replay a run and compare its outputs (``cosmo-runner verify``);
- :mod:`.runs`: the runs listing, lost runs and batches (``cosmo-runner runs``);
- :mod:`.report`, :mod:`.report_diff`, :mod:`.report_runs`: their terminal text (and the run
  and smoke summaries), pure functions from documents to text.

The environment diff itself is :mod:`cosmo_runner.env.diff` (pure data); its text is
:mod:`.report_diff`.
"""
