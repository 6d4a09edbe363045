"""What a person wrote in an email: HTML made readable, quoted history and signatures cut.

Mail clients put the whole thread under every reply. Agents need the new part only, so
``trim_reply`` cuts at the first quote header the common clients write (the full text is
kept in ``Message.raw["full_text"]``):

- Gmail, Apple Mail, Thunderbird: ``On <date>, <name> <address> wrote:`` (wrapped over up
  to three lines by Gmail; the other languages' forms too: ``Am ... schrieb``, ``Le ... a
  écrit``), then ``>``-quoted lines.
- Outlook: ``-----Original Message-----``, or a block of ``From:`` / ``Sent:`` / ``To:`` /
  ``Subject:`` lines (often under a line of underscores, or, in HTML, ``divRplyFwdMsg``).
- A trailing block of ``>`` lines after the reply.

Signatures go from an RFC 3676 ``-- `` line (section 4.3) and the mobile taglines
("Sent from my iPhone"). Interleaved answers between quotes are left whole: cutting them
would lose the answers. Forwards are not trimmed: there the quoted mail *is* the message.

The quote headers are mail-parser-reply's (13 languages, plus the few below it lacks); what
it cannot do is kept here: the guard against sentences that look like headers, the verb-less
attribution, the trailing ``>`` block, RFC 3676 signatures with a length limit, the
localised "Original Message" lines, ``format=flowed`` and HTML to text (inscriptis was
tried: it renders ``<blockquote>`` as indentation, not ``>`` lines, so quoted history in
HTML-only mail could no longer be cut, and lists and links come out in its own notation).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from mailparser_reply.constants import MAIL_LANGUAGES
from mailparser_reply.parser import EmailMessage

# --- subjects -------------------------------------------------------------------------------

# Re/Fwd in the languages clients localise them into (AW/WG German, SV Nordic, VS Finnish,
# TR French "transféré", RV/RE Spanish, ENC/RES Portuguese, ODP/PD Polish, YNT Turkish).
_PREFIX = re.compile(
    r"^\s*(?:re|fwd?|aw|wg|sv|vs|tr|rv|enc|res|odp|pd|antw|ynt|rif)\s*(?:\[\d+\])?\s*[:\uff1a]\s*",
    re.IGNORECASE,
)
_FORWARD = re.compile(r"^\s*(?:fwd?|wg|tr|rv|enc|pd|ynt)\s*[:\uff1a]", re.IGNORECASE)


def normalize_subject(subject: str) -> str:
    """``Re: AW: Fwd: Order 1234`` -> ``Order 1234`` (what threads compare)."""
    previous = None
    while previous != subject:
        previous, subject = subject, _PREFIX.sub("", subject, count=1)
    return " ".join(subject.split())


def is_reply_subject(subject: str) -> bool:
    return normalize_subject(subject) != " ".join(subject.split())


def is_forward_subject(subject: str) -> bool:
    return bool(_FORWARD.match(subject))


# --- HTML to text ---------------------------------------------------------------------------

_BLOCKS = {
    "address", "article", "aside", "dd", "div", "dl", "dt", "fieldset", "figure", "footer",
    "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol",
    "p", "pre", "section", "table", "tr", "ul",
}  # fmt: skip
_PARAGRAPHS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "pre"}
_HIDDEN = {"head", "script", "style", "title", "template", "noscript"}


class _TextMaker(HTMLParser):
    """Block elements become line breaks, ``<blockquote>`` becomes ``>`` lines, links keep
    their address; hidden elements (style, script, head) are dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.line = ""
        self.line_depth = 0
        self.depth = 0
        self.hidden = 0
        self.pre = 0
        self.href: list[str | None] = []
        self.tight: list[bool] = []  # per open <p>: Outlook's MsoNormal has no margins
        self.spacer = False  # the current line holds only a non-breaking space
        self.link_text: list[str] = []

    def _push(self) -> None:
        self.lines.append("> " * self.line_depth + self.line.strip())
        self.line, self.line_depth, self.spacer = "", self.depth, False

    def _soft_break(self) -> None:
        if self.line.strip():
            self._push()
        else:
            self.line, self.line_depth, self.spacer = "", self.depth, False

    def _blank_line(self) -> None:
        self._soft_break()
        self.lines.append("> " * self.depth)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag == "br":
            self._push()
        elif tag == "hr":
            self._blank_line()
        elif tag == "blockquote":
            self._soft_break()
            self.depth += 1
            self.line_depth = self.depth
        elif tag in _BLOCKS:
            self._soft_break()
            if tag == "pre":
                self.pre += 1
            if tag == "p":
                self.tight.append("MsoNormal" in (dict(attrs).get("class") or ""))
            if tag == "li":
                self.line, self.line_depth = "- ", self.depth
        elif tag == "a":
            self.href.append(dict(attrs).get("href"))
            self.link_text.append("")
        elif tag in ("td", "th") and self.line.strip():
            self.line += " "

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(self.hidden - 1, 0)
        elif tag == "blockquote":
            self._soft_break()
            self.depth = max(self.depth - 1, 0)
            self.line_depth = self.depth
        elif tag in _BLOCKS:
            if tag == "pre":
                self.pre = max(self.pre - 1, 0)
            tight = tag == "p" and bool(self.tight) and self.tight.pop()
            if tag in _PARAGRAPHS and not tight:
                self._blank_line()
            elif tight and self.spacer and not self.line.strip():
                self._blank_line()  # <p class=MsoNormal>&nbsp;</p>: Outlook's empty line
            else:
                self._soft_break()
        elif tag == "a" and self.href:
            href, text = self.href.pop(), self.link_text.pop()
            if href and href.startswith(("http://", "https://")) and href not in text:
                self.line += f" ({href})"

    def handle_data(self, data: str) -> None:
        if self.hidden:
            return
        if not self.line.strip():
            self.line_depth = self.depth
            self.spacer = "\xa0" in data and not data.replace("\xa0", "").strip()
        if self.pre:
            parts = data.split("\n")
            for part in parts[:-1]:
                self.line += part
                self._push()
            self.line += parts[-1]
        else:
            text = re.sub(r"\s+", " ", data.replace("\xa0", " "))
            self.line += text
        if self.link_text:
            self.link_text[-1] += data

    def text(self) -> str:
        self._soft_break()
        return tidy("\n".join(self.lines))


def html_to_text(html: str) -> str:
    maker = _TextMaker()
    maker.feed(html)
    maker.close()
    return maker.text()


def tidy(text: str) -> str:
    """Trailing spaces off, at most one blank line in a row, no blank lines at the ends."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    out: list[str] = []
    for line in lines:
        if not line.strip(" >") and out and not out[-1].strip(" >"):
            continue
        out.append(line)
    return "\n".join(out).strip("\n")


# --- format=flowed (RFC 3676) ---------------------------------------------------------------


def unflow(text: str, delsp: bool = False) -> str:
    """Join the soft line breaks of a ``format=flowed`` body (RFC 3676 section 4)."""
    out: list[str] = []
    pending: str | None = None
    pending_depth = 0
    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]  # space-stuffing (section 4.4)
        if pending is not None and depth != pending_depth:
            out.append(_quoted(pending_depth, pending))
            pending = None
        soft = content.endswith(" ") and content != "-- "
        if soft and delsp:
            content = content[:-1]
        pending = content if pending is None else pending + content
        pending_depth = depth
        if not soft:
            out.append(_quoted(depth, pending))
            pending = None
    if pending is not None:
        out.append(_quoted(pending_depth, pending))
    return "\n".join(out)


def _quoted(depth: int, text: str) -> str:
    return ("> " * depth + text) if depth else text


# --- quoted history and signatures ----------------------------------------------------------

# mail-parser-reply knows the quote headers of 13 languages (``On ... wrote:``, ``Am ...
# schrieb``, Outlook's ``From:``/``Sent:`` blocks, ...). What it lacks is added through its
# own per-language lookup: Portuguese, Russian, Finnish and Turkish, and the forms Gmail
# writes in Spanish (``El ... (<address>) escribió:``) and Czech (``napsal:``). Its
# signature rules are not used: they cut at "Best regards", at hyphen lists, and after a
# ``--`` however long the rest.
_MORE_LANGUAGES = {
    "es": {"wrote_header": r"^(El\s.+?\sescribió\s?:)$"},
    "cs": {"wrote_header": r"^(Dne\s.+?\snapsal\s?:)$"},
    "pt": {
        "wrote_header": r"^(Em\s.+?\s?.+?\sescreveu\s?:)$",
        "from_header": r"((?:(?:^|\n)[* ]*(?:De|Enviada em|Enviado|Data|Para|Assunto|Cc)\s?:"
        r"[ *]*.*){2,}(?:\n.*){,1})",
    },
    "ru": {
        "wrote_header": r"^(.{0,300}?(?:написал|написала|пишет)\s?:)$",
        "from_header": r"((?:(?:^|\n)[* ]*(?:От|Отправлено|Кому|Тема|Дата|Копия)\s?:"
        r"[ *]*.*){2,}(?:\n.*){,1})",
    },
    "fi": {
        "wrote_header": r"^(.{0,300}?kirjoitti\s?:)$",
        "from_header": r"((?:(?:^|\n)[* ]*(?:Lähettäjä|Lähetetty|Vastaanottaja|Aihe)\s?:"
        r"[ *]*.*){2,}(?:\n.*){,1})",
    },
    "tr": {
        "wrote_header": r"^(.{0,300}?yazd\u0131\s?:)$",
        "from_header": r"((?:(?:^|\n)[* ]*(?:Kimden|Tarih|Kime|Konu|Bilgi)\s?:"
        r"[ *]*.*){2,}(?:\n.*){,1})",
    },
}


class _QuoteHeaders(EmailMessage):
    def _get_language_regex(self, language: str, regex_key: str) -> str:
        known = (
            super()._get_language_regex(language, regex_key) if language in MAIL_LANGUAGES else ""
        )
        return "|".join(filter(None, (known, _MORE_LANGUAGES.get(language, {}).get(regex_key))))


_HEADER = _QuoteHeaders(text="", languages=[*MAIL_LANGUAGES, *_MORE_LANGUAGES]).HEADER_REGEX
_HEADER_SPAN = 7  # lines: Outlook's block, or Gmail's attribution wrapped over up to 3
_HEADER_CHARS = 600  # which also bounds the library's backtracking regexes
# Every header has a line that ends in a colon or starts with a field ("From:"): a cheap
# test that spares ordinary paragraphs those regexes.
_FIELD = re.compile(r":$|^[*> ]*\w[\w ]{0,24}\s?:", re.UNICODE)
# At most this many such paragraphs are tried per mail (about 1 ms each), so that a 10 MB
# mail of colons costs no more than the old hand-written rules; past it, the history is
# found by its "Original Message" line or its trailing ``>`` block only.
_HEADER_TRIES = 500
# mail-parser-reply knows the English "Original Message" line only.
_ORIGINAL = re.compile(
    r"^-{2,}\s*(?:original message|ursprüngliche nachricht|message d'origine|"
    r"mensaje original|messaggio originale|oorspronkelijk bericht|mensagem original|"
    r"исходное сообщение|opprinnelig melding|ursprungligt meddelande|"
    r"alkuperäinen viesti|wiadomość oryginalna)\s*-{2,}$",
    re.IGNORECASE,
)
_UNDERSCORES = re.compile(r"^_{8,}$")
_MOBILE = re.compile(
    r"^(?:sent from my \w[\w ]{0,30}|sent from (?:mail|outlook) for \w+|"
    r"get outlook for (?:ios|android)|sent from yahoo mail.*|sent from proton mail.*|"
    r"von meinem \w+ gesendet|envoyé de mon \w+|enviado desde mi \w+|"
    r"отправлено с(?:о)? \w+)\W*$",  # noqa: RUF001
    re.IGNORECASE,
)
_SIGNATURE_MAX_LINES = 20


def _is_quote(line: str) -> bool:
    return line.lstrip().startswith(">")


def _quote_follows(lines: list[str], index: int) -> bool:
    for line in lines[index:]:
        if line.strip():
            return _is_quote(line)
    return False


def _header_at(lines: list[str], i: int, budget: list[int]) -> bool:
    """A quote header (``On <date>, <who> wrote:``, an Outlook ``From:`` block) at line
    ``i``. To tell it from a sentence that happens to start with "On" (or a body that
    lists a "Date:"), it must carry a date or an address, or quoted lines must follow."""
    window: list[str] = []
    for line in lines[i : i + _HEADER_SPAN]:
        if not line.strip() or sum(map(len, window)) + len(line) > _HEADER_CHARS:
            break  # the header is one short paragraph: a blank line ends it
        window.append(line.strip())
    found = None
    if budget[0] > 0 and any(map(_FIELD.search, window)):
        budget[0] -= 1
        found = _HEADER.match("\n".join(window))
    if found is not None:
        header = found.group()
        after = i + header.count("\n") + 1
        return bool(re.search(r"\d|@", header)) or _quote_follows(lines, after)
    # Languages without a verb (Gmail in Russian writes only the date, the name and the
    # address): a line with an address that ends in a colon, directly above quoted lines.
    for span in range(1, min(3, len(window)) + 1):
        candidate = " ".join(window[:span])
        if candidate.endswith(":") and "@" in candidate and len(candidate) < 300:
            return _quote_follows(lines, i + span)
    return False


def _history_starts(lines: list[str]) -> int | None:
    budget = [_HEADER_TRIES]
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line or _is_quote(raw):
            continue
        if _ORIGINAL.match(line):
            return i
        if _header_at(lines, i, budget):
            above = i - 1
            while above >= 0 and not lines[above].strip():
                above -= 1
            return above if above >= 0 and _UNDERSCORES.match(lines[above].strip()) else i
    return _trailing_quote(lines)


def _trailing_quote(lines: list[str]) -> int | None:
    """Where a block of ``>`` lines that runs to the end starts (with an unknown
    attribution line right above it, if any), or None."""
    end = len(lines)
    while end > 0 and (not lines[end - 1].strip() or _is_quote(lines[end - 1])):
        end -= 1
    if end == len(lines) or not any(_is_quote(line) for line in lines[end:]):
        return None
    if end > 0 and lines[end - 1].rstrip().endswith(":"):
        return end - 1
    return end


def _cut_signature(lines: list[str]) -> list[str]:
    for i, line in enumerate(lines):
        if line.rstrip() == "--" and len(lines) - i - 1 <= _SIGNATURE_MAX_LINES:
            return lines[:i]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    if lines and _MOBILE.match(lines[-1].strip()):
        return lines[:-1]
    return lines


def trim_reply(text: str, forward: bool = False) -> str:
    """The new part of a reply; the whole text if trimming would leave nothing."""
    full = tidy(text)
    if forward:
        return full
    lines = full.split("\n")
    start = _history_starts(lines)
    if start is not None:
        lines = lines[:start]
    trimmed = tidy("\n".join(_cut_signature(lines)))
    return trimmed or full
