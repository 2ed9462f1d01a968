"""metafor 3.8.1's default control, for checking values that metafor computed with its
defaults (the "default" fixtures, metafor-notes' checked values): Fisher scoring stops at an
absolute |step| < 1e-5 after at most 100 iterations. The project's default is the converged
one (threshold 1e-10, maxiter 200), which the "tight" fixtures check."""

from __future__ import annotations

METAFOR = {"threshold": 1e-5, "maxiter": 100}
