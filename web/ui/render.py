"""Pages: Jinja2 templates in the viewer's language and time zone.

``page(request, "inbox.html", member, **context)`` renders a template with what every page
needs: the member, their language's translations (Babel catalogues in ``web/ui/locale``,
read from the ``.po`` files at start: no build step), the CSRF token, and the time filters
(``when`` in the viewer's zone, ``their_time`` in a customer's). Templates hold no rules:
a page's handler calls the same service functions as the REST API and hands the results
over.

Two globals serve the page's weight on slow networks (bench/web.py's Slow 3G figure):
``static_url("app.css")`` is ``/static/app.css?v=<sha8 of its content>``, which the static
files answer with a year's immutable cache (a second visit asks for no asset);
``inline_css("app.css", "inbox.css")`` is those files' text for a ``<style nonce="{{
csp_nonce }}">`` (the response's CSP nonce, ``web.protection``): no request stands between
the HTML and the first paint.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from collections.abc import Mapping
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
from markupsafe import Markup

from heliograph import texts
from routing.models import TeamMember
from web.ui.session import masked_csrf_token

HERE = Path(__file__).parent
STATIC = HERE / "static"
LANGUAGES = {"en": "English", "es": "Español", "zh": "中文", "ru": "Русский"}
DEFAULT_LANGUAGE = "en"


def N_(message: str) -> str:
    """Mark ``message`` for extraction (``make translations``) without translating it: it is
    translated where a page shows it (``t(message)`` or ``_(value)`` in a template)."""
    return message


# Words that pages translate as they show them (``_(c.status)``, ``t(title)``): stored
# values and the error page's titles. Marked here so that extraction finds them.
SHOWN_WORDS = (
    # conversation statuses (inbox.models.STATUSES)
    N_("open"),
    N_("pending"),
    N_("snoozed"),
    N_("resolved"),
    # priorities
    N_("urgent"),
    N_("high"),
    N_("normal"),
    N_("low"),
    # delivery of a reply (inbox.outbox)
    N_("received"),
    N_("queued"),
    N_("sending"),
    N_("sent"),
    N_("delivered"),
    N_("read"),
    N_("failed"),
    # program enrollments (crm_core.models.ENROLLMENT_STATUSES)
    N_("active"),
    N_("completed"),
    N_("refunded"),
    # what a score's inputs say in words (crm_core.scores)
    N_("medium"),
    N_("not enrolled in any program"),
    # the error page's titles (web/errors.py)
    N_("Not allowed"),
    N_("Not found"),
    N_("Too many attempts"),
    N_("Something is wrong"),
    N_("Error"),
    # web/ui/session.py's refusal (it cannot import this module)
    N_("the form has expired or did not come from this site"),
    # what joins a list inside a service's sentence (heliograph.texts.SEPARATOR)
    N_(", "),
)

templates = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
    )
)
templates.env.policies["ext.i18n.trimmed"] = True


def _static_file(name: str) -> Path:
    path = (STATIC / name).resolve()
    if not path.is_relative_to(STATIC.resolve()) or not path.is_file():
        raise FileNotFoundError(f"no static file {name!r}")
    return path


@functools.lru_cache(maxsize=256)
def _version(path: Path, mtime_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:8]


@functools.lru_cache(maxsize=64)
def _text(path: Path, mtime_ns: int) -> str:
    text = path.read_text(encoding="utf-8")
    if "</" in text:  # would end the <style> element early
        raise ValueError(f"{path.name} cannot be inlined: it holds '</'")
    return text


def static_url(name: str) -> str:
    """``/static/<name>?v=<sha8>``: a new URL whenever the file changes (cached for a year)."""
    path = _static_file(name)
    return f"/static/{name}?v={_version(path, path.stat().st_mtime_ns)}"


def inline_css(*names: str) -> Markup:
    """The text of these stylesheets (our own files) for an inline ``<style>``."""
    parts = []
    for name in names:
        path = _static_file(name)
        parts.append(_text(path, path.stat().st_mtime_ns))
    return Markup("\n".join(parts))  # our own files, checked for "</"


templates.env.globals["static_url"] = static_url
templates.env.globals["inline_css"] = inline_css
templates.env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]


def shown(
    tr: NullTranslations, value: Any, english: str | None = None, *, marked: bool = True
) -> str:
    """A message for a page in the language of ``tr`` (a template's ``t``): a service's
    ``Text`` (heliograph.texts) with its parameters, the JSON a row stored one as (``english``,
    the row's English column, when there is none), or a string marked with ``N_``.
    ``marked`` False (a template's ``words``): a plain string is data (a customer's
    message in a timeline), shown as it is; only a ``Text`` is translated."""
    if isinstance(value, Mapping):
        value = texts.load(value, english)
    elif value is None:
        value = english
    if isinstance(value, texts.Text):
        return value.localized(tr)
    if not value:
        return ""
    return tr.gettext(value) if marked else str(value)


def from_query(value: str | None) -> str | None:
    """A message a redirect carried in its URL (``texts.dump`` as JSON, or a plain string):
    a ``Text`` only when its every template is one of ours (a catalogue's msgid), since a
    template is a format string; anything else is shown as the plain words it is."""
    if not value or not value.startswith("{"):
        return value
    try:
        loaded = texts.load(json.loads(value), "")
    except (ValueError, TypeError, RecursionError):
        return ""
    known = _msgids()
    if not isinstance(loaded, texts.Text) or not all(
        t in known or t == texts.CONCAT for t in texts.templates_of(loaded)
    ):
        return ""
    return loaded


def to_query(message: str) -> str:
    """``message`` for ``from_query``: a ``Text`` as its JSON, a plain string as it is."""
    data = texts.dump(message)
    return json.dumps(data, ensure_ascii=False) if data is not None else message


@functools.cache
def _msgids() -> frozenset[str]:
    """Every msgid of the catalogues (a plural's both forms): the templates that are ours."""
    with (HERE / "locale" / "es" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalog = read_po(f, locale="es")
    found: set[str] = set()
    for m in catalog:
        found.update((m.id,) if isinstance(m.id, str) else m.id)
    return frozenset(found - {""})


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

    def duration(minutes: int | None) -> str:
        """A wait, short: 45m, 1h 30m, 3d (in the viewer's language)."""
        if minutes is None:
            return ""
        if minutes < 60:
            return tr.gettext("%(m)sm") % {"m": minutes}
        if minutes < 48 * 60:
            return tr.gettext("%(h)sh %(m)sm") % {"h": minutes // 60, "m": minutes % 60}
        return tr.gettext("%(d)sd") % {"d": minutes // 1440}

    return templates.TemplateResponse(
        request,
        template,
        {
            "member": member,
            "language": language,
            "languages": LANGUAGES,
            # Masked afresh for each render (BREACH: pages are compressed).
            "csrf": masked_csrf_token(request),
            # This response's CSP nonce for inline styles (web.protection sets it).
            "csp_nonce": request.scope.get("state", {}).get("csp_nonce", ""),
            "gettext": _make_new_gettext(tr.gettext),
            "ngettext": _make_new_ngettext(tr.ngettext),
            "_": _make_new_gettext(tr.gettext),
            # A message held in a variable (marked with N_ where it was written, or a service's
            # heliograph.texts.Text, or the JSON a row stored one as: ``t(row.reason_text,
            # row.reason)``), translated and then escaped like any value: never markup.
            "t": functools.partial(shown, tr),
            # A value that may be a service's Text (a timeline summary): translated when it is
            # one, else shown as it is (a customer's words are never looked up).
            "words": functools.partial(shown, tr, marked=False),
            "when": when,
            "their_time": their_time,
            "duration": duration,
            **context,
        },
        status_code=status_code,
    )
