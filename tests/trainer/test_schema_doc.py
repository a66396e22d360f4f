"""docs/run-schema.md and the code name the same params, tags and metrics."""

from __future__ import annotations

import re
from pathlib import Path

from trainer import schema
from trainer.config import RunConfig

DOC = (Path(__file__).resolve().parents[2] / "docs" / "run-schema.md").read_text()


def test_every_schema_name_is_documented() -> None:
    names = [v for k, v in vars(schema).items() if k[:2] in ("P_", "T_", "M_", "S_", "A_") and isinstance(v, str)]
    missing = [n for n in names if f"`{n}`" not in DOC and n not in DOC]
    assert not missing, missing
    for status in schema.STATUSES:
        assert f"`{status}`" in DOC


def test_every_config_field_is_documented_and_nothing_else() -> None:
    fields = {k for k in RunConfig().to_flat() if not k.startswith("mult.")}
    params_section = DOC.split("## Params")[1].split("## Tags")[0]
    pattern = r"^\| `((?:model|param|hp|optim|train|data)\.[a-z_0-9]+)`"
    assert set(re.findall(pattern, params_section, re.MULTILINE)) == fields
