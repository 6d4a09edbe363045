"""Pages: Jinja2 templates in the viewer's language and time zone.

``page(request, "inbox.html", member, **context)`` renders a template with what every page
needs: the member, their language's translations (Babel catalogues in ``web/ui/locale``,
read from the ``.po`` files at start: no build step), the CSRF token, and the time filters
(``when`` in the viewer's zone, ``their_time`` in a customer's). Templates hold no rules:
a page's handler calls the same service functions as the REST API and hands the results
over.
"""

from __future__ import annotations

import functools
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytz
from babel.dates import format_datetime, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from jinja2.ext import _make_new_gettext, _make_new_ngettext  # newstyle, as install_* does

from routing.models import TeamMember
from web.ui.session import csrf_token

HERE = Path(__file__).parent
LANGUAGES = {"en": "English", "es": "Español", "zh": "中文", "ru": "Русский"}
DEFAULT_LANGUAGE = "en"

templates = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
    )
)
templates.env.policies["ext.i18n.trimmed"] = True
templates.env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]


@functools.cache
def translations(language: str) -> NullTranslations:
    """The catalogue of ``language`` (``web/ui/locale/<language>/LC_MESSAGES/messages.po``),
    compiled in memory; English (the source strings) when there is none."""
    po = HERE / "locale" / language / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=language)
    mo = io.BytesIO()
    write_mo(mo, catalog)
    mo.seek(0)
    return Translations(fp=mo)


def language_of(member: TeamMember | None, request: Request | None = None) -> str:
    """The member's interface language; before sign-in, the browser's first known one."""
    chosen = getattr(member, "ui_language", None) if member is not None else None
    if chosen in LANGUAGES:
        return str(chosen)
    if request is not None:
        for part in request.headers.get("accept-language", "").split(","):
            code = part.split(";")[0].strip().lower()[:2]
            if code in LANGUAGES:
                return code
    return DEFAULT_LANGUAGE


def _zone(name: str | None) -> Any:
    try:
        return pytz.timezone(name or "UTC")
    except pytz.UnknownTimeZoneError:
        return pytz.UTC


def local(moment: datetime | None, zone: str | None) -> datetime | None:
    if moment is None:
        return None
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(_zone(zone))


def page(
    request: Request,
    template: str,
    member: TeamMember | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render ``template`` for ``member`` (None: signed out) in their language and zone."""
    language = language_of(member, request)
    tr = translations(language)
    viewer_zone = member.timezone if member is not None else "UTC"

    def when(moment: datetime | None, fmt: str = "short") -> str:
        """A moment in the viewer's zone."""
        shown = local(moment, viewer_zone)
        return format_datetime(shown, fmt, locale=language) if shown else ""

    def their_time(zone: str | None, moment: datetime | None = None) -> str:
        """The time it is (or was, at ``moment``) where a customer lives."""
        if not zone:
            return ""
        shown = local(moment or datetime.now(UTC), zone)
        return format_time(shown, "short", locale=language) if shown else ""

    return templates.TemplateResponse(
        request,
        template,
        {
            "member": member,
            "language": language,
            "languages": LANGUAGES,
            "csrf": csrf_token(request),
            "gettext": _make_new_gettext(tr.gettext),
            "ngettext": _make_new_ngettext(tr.ngettext),
            "_": _make_new_gettext(tr.gettext),
            "when": when,
            "their_time": their_time,
            **context,
        },
        status_code=status_code,
    )
