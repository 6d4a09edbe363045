"""Words the service says to people, in English and translatable (issue #16).

A service that explains itself (a routing reason, a refusal, a timeline entry) says it
with ``Text(template, **params)``: a ``str`` whose value is the English sentence, so the
REST API, Slack, Telegram, the logs and the database columns get exactly what they got
before. It also keeps its ``template`` (a gettext msgid with ``%(name)s`` placeholders)
and ``params``, so the web app shows it in the viewer's language at display time
(``web.ui.render``'s ``t``): the template translated, then each parameter put in (a
parameter that is itself a ``Text`` is translated too; a list is joined with ", ").
``Plural(singular, plural, n, **params)`` is one whose words follow a number (ngettext).

Stored explanations keep both: the English column as before, and ``dump(text)`` (the
template and parameters as JSON) beside it, which ``load`` turns back into a ``Text``; an
old row without it shows its English.

Concatenation keeps the parts (``prefix + reason`` is a ``Text`` when either is one), so
a prefix built in one module and a reason built in another stay translatable together.
Anything else (``.strip()``, ``%``, an f-string) gives a plain English ``str``.

Extraction: ``make translations`` finds every ``Text("...")`` template in the packages
that ``web/ui/babel.cfg`` names (``extract_texts``, a Babel extractor), so a template
written here is in the catalogues and ``tests/web/ui/test_languages.py`` asks for its
translations. Templates are literal strings, never f-strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, cast

# Joins a list parameter; also a msgid (web/ui/render.py marks it), so each language has its own.
SEPARATOR = ", "

Param = Any  # str | int | float | Text | list[...] | None
CONCAT = "%(a)s%(b)s"  # the template of ``a + b`` (no msgid: it translates as itself)


def _english(value: Param) -> str:
    if isinstance(value, list | tuple):
        return SEPARATOR.join(_english(v) for v in value)
    return "" if value is None else str(value)


class Text(str):
    """An English sentence that remembers its template and parameters (see the module)."""

    template: str
    params: dict[str, Param]

    def __new__(cls, template: str, /, **params: Param) -> Text:
        english = template % {k: _english(v) for k, v in params.items()} if params else template
        text = super().__new__(cls, english)
        text.template = template
        text.params = params
        return text

    def __add__(self, other: object) -> Any:
        if isinstance(other, str):
            return _rebuild(CONCAT, {"a": self, "b": other})
        return NotImplemented

    def __radd__(self, other: object) -> Any:
        if isinstance(other, str):
            return _rebuild(CONCAT, {"a": other, "b": self})
        return NotImplemented

    def __reduce__(self) -> Any:  # pickling (a job payload, a cache) keeps the template
        return (_rebuild, (self.template, self.params))

    def _pattern(self, catalog: Catalog) -> str:
        return catalog.gettext(self.template)

    def localized(self, catalog: Catalog) -> str:
        """The sentence in the language of ``catalog`` (gettext's ``Translations``); an
        English template it does not know, or a translation that does not fit the
        parameters, stays English."""
        if not self.params:
            return self._pattern(catalog)
        values = {k: _translated(v, catalog) for k, v in self.params.items()}
        try:
            return self._pattern(catalog) % values
        except (KeyError, ValueError, TypeError):
            return self.template % values


class Plural(Text):
    """A ``Text`` whose words follow a number: ``Plural("%(num)s day", "%(num)s days", n)``
    (``num`` is a parameter too); English picks by ``n == 1``, a catalogue by its own rule."""

    plural: str
    num: int

    def __new__(cls, singular: str, plural: str, num: int, /, **params: Param) -> Plural:
        params = {"num": num, **params}
        text = cast(Plural, super().__new__(cls, singular if num == 1 else plural, **params))
        text.template, text.plural, text.num = singular, plural, num
        return text

    def __reduce__(self) -> Any:
        params = {k: v for k, v in self.params.items() if k != "num"}
        return (_rebuild_plural, (self.template, self.plural, self.num, params))

    def _pattern(self, catalog: Catalog) -> str:
        return catalog.ngettext(self.template, self.plural, self.num)


class Catalog(Protocol):
    def gettext(self, message: str, /) -> str: ...
    def ngettext(self, singular: str, plural: str, n: int, /) -> str: ...


def _rebuild(template: str, params: dict[str, Param]) -> Text:
    return Text(template, **params)


def _rebuild_plural(singular: str, plural: str, num: int, params: dict[str, Param]) -> Plural:
    return Plural(singular, plural, num, **params)


def _translated(value: Param, catalog: Catalog) -> str:
    if isinstance(value, Text):
        return value.localized(catalog)
    if isinstance(value, list | tuple):
        return catalog.gettext(SEPARATOR).join(_translated(v, catalog) for v in value)
    return "" if value is None else str(value)


def message(exc: BaseException) -> str:
    """What an exception says: its ``Text`` when it was raised with one, else ``str(exc)``
    (``str(exc)`` of a ``Text`` is the plain English)."""
    first = exc.args[0] if len(exc.args) == 1 else None
    return first if isinstance(first, Text) else str(exc).strip("'\"")


def dump(value: str | None) -> dict[str, Any] | None:
    """A ``Text`` as JSON for a column beside its English (None for a plain string)."""
    if not isinstance(value, Text):
        return None
    data = {"t": value.template, "p": {k: _dump_param(v) for k, v in value.params.items()}}
    if isinstance(value, Plural):
        data["pl"] = value.plural
    return data


def _dump_param(value: Param) -> Any:
    if isinstance(value, Text):
        return dump(value)
    if isinstance(value, list | tuple):
        return [_dump_param(v) for v in value]
    if value is None or isinstance(value, int | float):
        return value
    return str(value)


def load(data: Mapping[str, Any] | None, english: str | None = None) -> str | None:
    """The ``Text`` that ``dump`` stored; ``english`` (an old row's column) when there is none
    or it is not one."""
    if not isinstance(data, Mapping) or not isinstance(data.get("t"), str):
        return english
    params = data.get("p") or {}
    if not isinstance(params, Mapping):
        return english
    loaded = {str(k): _load_param(v) for k, v in params.items()}
    plural = data.get("pl")
    if isinstance(plural, str) and isinstance(loaded.get("num"), int):
        num = loaded.pop("num")
        return Plural(data["t"], plural, num, **loaded)
    return Text(data["t"], **loaded)


def _load_param(value: Any) -> Param:
    if isinstance(value, Mapping):
        return load(value, "")
    if isinstance(value, list):
        return [_load_param(v) for v in value]
    return value


def templates_of(value: Any) -> Iterator[str]:
    """Every template in a ``Text`` and its parameters (to check them against a catalogue)."""
    if isinstance(value, Text):
        yield value.template
        if isinstance(value, Plural):
            yield value.plural
        for v in value.params.values():
            yield from templates_of(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from templates_of(v)


# --- extraction (Babel) -----------------------------------------------------------------


def extract_texts(
    fileobj: Any, keywords: Iterable[str], comment_tags: Iterable[str], options: dict[str, Any]
) -> Iterator[tuple[int, str | None, str | tuple[str, ...], list[str]]]:
    """A Babel extractor (``web/ui/babel.cfg``'s ``[extractors]``): the ``Text("...")``
    templates of the packages named by the ``packages`` option (paths relative to the
    repository, two levels above the file the section matched, ``web/ui/babel.cfg``).
    Each comes with the file it was found in, as an automatic comment."""
    from babel.messages.extract import extract_python  # only `make translations` needs Babel

    root = Path(getattr(fileobj, "name", "web/ui/babel.cfg")).resolve().parents[2]
    packages = options.get("packages", "")
    names = packages.split() if isinstance(packages, str) else list(packages)
    for package in names:
        for path in sorted((root / package).rglob("*.py")):
            with path.open("rb") as source:
                found = list(extract_python(source, {"Text": None, "Plural": (1, 2)}, [], {}))
            for lineno, funcname, messages, _comments in found:
                where = path.relative_to(root).as_posix()  # the file (no line: less churn)
                parts = messages if isinstance(messages, tuple) else (messages,)
                if funcname == "Plural":
                    if len(parts) >= 2 and isinstance(parts[0], str) and isinstance(parts[1], str):
                        yield lineno, "ngettext", parts[:2], [where]
                elif isinstance(parts[0], str) and parts[0]:
                    yield lineno, None, parts[0], [where]
