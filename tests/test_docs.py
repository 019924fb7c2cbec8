"""Docs are checked by tests: settings and error types must be documented."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from vecstore import errors
from vecstore.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_documented_with_its_default() -> None:
    text = (ROOT / "docs" / "settings.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", text, flags=re.MULTILINE))
    fields = msgspec.structs.fields(Settings)
    assert set(rows) == {f.name for f in fields}
    for field in fields:
        documented = rows[field.name].strip().strip("`")
        if field.default is None or field.default == "":
            assert documented.startswith("*("), field.name
        elif isinstance(field.default, bool):
            assert documented == str(field.default).lower(), field.name
        else:
            assert documented == str(field.default), field.name


def test_every_error_type_is_documented() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    types = {
        cls.type
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.VecstoreError)
    }
    missing = sorted(t for t in types if f"`{t}`" not in text)
    assert missing == []


def test_readme_shows_the_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme
    assert "make test" in readme
