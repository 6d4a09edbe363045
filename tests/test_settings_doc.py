"""docs/configuration.md is what the code says: every setting, with a description."""

from __future__ import annotations

from service import settings_doc


def test_every_setting_has_a_description() -> None:
    assert settings_doc.undocumented() == [], "write a Field(description=...) for these"


def test_the_configuration_page_is_generated_from_the_code() -> None:
    page = settings_doc.PAGE.read_text(encoding="utf-8")
    assert settings_doc.MARKER in page
    assert page == settings_doc.render(page), "run: python -m service.settings_doc"


def test_every_variable_is_on_the_page() -> None:
    page = settings_doc.PAGE.read_text(encoding="utf-8")
    for _, fields in settings_doc.groups():
        for name in fields:
            assert f"`HELIOGRAPH_{name.upper()}`" in page
