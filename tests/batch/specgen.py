"""Generated run specs for batch tests and the batch bench: GEN, k studies, REML, one CSV each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def generate_specs(
    folder: Path, count: int, *, k: int = 20, seed: int = 0, plots: bool = False, start: int = 0
) -> list[Path]:
    """``count`` specs ``sim-NNNNN.json`` (each with its own ``sim-NNNNN.csv``) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = {"yi": "yi", "vi": "vi", "study": "study"}
    paths = []
    for i in range(start, start + count):
        rng = np.random.default_rng(seed * 1_000_003 + i)
        vi = rng.uniform(0.01, 0.2, k)
        yi = rng.normal(0.3, np.sqrt(vi + 0.05))
        rows = "".join(f"s{j + 1},{yi[j]:.6f},{vi[j]:.6f}\n" for j in range(k))
        (folder / f"sim-{i:05d}.csv").write_text("study,yi,vi\n" + rows, encoding="utf-8")
        analysis = {
            "id": "fit",
            "input": "d",
            "measure": "GEN",
            "columns": columns,
            "method": "REML",
            "test": "z",
            "level": 95,
        }
        if plots:
            analysis["plots"] = ["forest", "funnel"]
        spec = {
            "spec_version": 1,
            "name": f"sim-{i}",
            "inputs": {"d": {"path": f"sim-{i:05d}.csv"}},
            "validators": [
                {
                    "id": "table",
                    "kind": "effect_table",
                    "input": "d",
                    "measure": "GEN",
                    "columns": columns,
                }
            ],
            "analyses": [analysis],
        }
        path = folder / f"sim-{i:05d}.json"
        path.write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
        paths.append(path)
    return paths
