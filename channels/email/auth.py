"""Is the mail really from the address in its From header? SPF, DKIM and DMARC.

A mail that does not pass never joins an existing customer's profile or thread silently
(``channels.email.receive`` keeps it apart as an "unverified sender" conversation).
``HELIOGRAPH_EMAIL_AUTH`` says who checks:

- ``off``: nobody here; every mail joins by its From address (an MTA that already
  rejects mail failing DMARC).
- ``trust-mta`` (default): the receiving MTA checked, and wrote what it found into an
  ``Authentication-Results`` header (RFC 8601), parsed with ``authres``. Only our MTA's
  headers count: those with ``HELIOGRAPH_EMAIL_AUTHSERV_ID`` or, unset, the authserv-id of
  the topmost one (each hop prepends its headers, so the topmost is the last hop's, ours).
  The mail passes on ``dmarc=pass``; on a DMARC ``fail`` it does not; with no usable DMARC
  result (none, temperror, not checked) it passes on a DKIM or SPF pass whose domain is
  aligned with the From domain (DMARC's own test, RFC 7489 section 3.1, relaxed).
- ``verify``: DKIM is checked here with ``dkimpy`` (a DNS lookup per signature) and the
  mail passes on a valid signature aligned with From. For the SMTP listener taking mail
  straight from the internet, where no MTA of ours wrote a header and any
  ``Authentication-Results`` in the mail was written by the sender. SPF is not checked
  (the webhook path does not know the connecting IP), so a domain that signs nothing is
  unverified.

No ``Authentication-Results`` at all under ``trust-mta`` (on both paths, the webhook fed
by our MTA and the SMTP listener behind it): the MTA checked nothing, so there is no
verdict, and the mail joins as before this check existed (the existing behaviour, and what
an installation without a checking MTA needs) unless ``HELIOGRAPH_EMAIL_AUTH_REQUIRED``
says that every mail must carry one. An SMTP listener reachable from the internet should
run ``verify`` (or sit behind an MTA with ``HELIOGRAPH_EMAIL_AUTHSERV_ID`` set).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32

import authres  # type: ignore[import-untyped]
import dkim  # type: ignore[import-untyped]

from channels.email.settings import EmailSettings

log = logging.getLogger(__name__)

METHODS = ("spf", "dkim", "dmarc")
DnsTxt = Callable[..., bytes | None]


@dataclass(frozen=True)
class SenderCheck:
    verified: bool  # joins the profile and thread of its From address
    checked: bool = False  # some verdict was found (False: off, or no header)
    results: dict[str, str] = field(default_factory=dict)  # method -> result
    checked_by: str = ""
    methods: tuple[str, ...] = METHODS  # what was looked at (``verify``: DKIM only)

    @property
    def summary(self) -> str:
        """``SPF fail, DKIM none, DMARC fail (mx.example)``: what the agent is shown."""
        if not self.checked:
            return "not checked"
        parts = ", ".join(f"{m.upper()} {self.results.get(m, 'none')}" for m in self.methods)
        return f"{parts} ({self.checked_by})" if self.checked_by else parts


def check_sender(
    raw: bytes, from_address: str, settings: EmailSettings, dns_txt: DnsTxt | None = None
) -> SenderCheck:
    """The verdict on one raw mail (blocking: ``verify`` asks DNS; run it in a thread)."""
    if settings.email_auth == "off":
        return SenderCheck(verified=True)
    from_domain = from_address.rpartition("@")[2].lower()
    if settings.email_auth == "verify":
        return _verify_dkim(raw, from_domain, dns_txt or dkim.dnsplug.get_txt)
    headers = _trusted_headers(raw, settings.email_authserv_id)
    if not headers:
        return SenderCheck(verified=not settings.email_auth_required)
    return _judge(headers, from_domain)


def _trusted_headers(raw: bytes, authserv_id: str) -> list[authres.AuthenticationResultsHeader]:
    message = BytesHeaderParser(policy=compat32).parsebytes(raw)
    parsed: list[authres.AuthenticationResultsHeader] = []
    for value in message.get_all("Authentication-Results") or []:
        text = " ".join(str(value).split())  # unfolded
        try:
            parsed.append(authres.AuthenticationResultsHeader.parse_value(text))
        except (authres.AuthResError, ValueError, IndexError) as exc:
            log.info("unreadable Authentication-Results %r ignored: %s", text[:200], exc)
    wanted = authserv_id.lower() or (parsed[0].authserv_id.lower() if parsed else "")
    return [h for h in parsed if str(h.authserv_id).lower() == wanted]


def _judge(headers: list[authres.AuthenticationResultsHeader], from_domain: str) -> SenderCheck:
    results: dict[str, str] = {}
    aligned_pass = False
    for header in headers:
        for result in header.results:
            method, outcome = str(result.method).lower(), str(result.result).lower()
            if method not in METHODS:
                continue
            # Several results for one method (two DKIM signatures): a pass wins.
            if results.get(method) != "pass":
                results[method] = outcome
            if method in ("dkim", "spf") and outcome == "pass":
                domains = [_domain(str(p.value)) for p in result.properties]
                aligned_pass = aligned_pass or any(_aligned(d, from_domain) for d in domains)
    dmarc = results.get("dmarc")
    if dmarc == "pass":
        verified = True
    elif dmarc == "fail":
        verified = False  # the domain's owner says this mail is not theirs
    else:
        verified = aligned_pass
    return SenderCheck(verified, True, results, str(headers[0].authserv_id))


def _verify_dkim(raw: bytes, from_domain: str, dns_txt: DnsTxt) -> SenderCheck:
    message = BytesHeaderParser(policy=compat32).parsebytes(raw)
    signatures = len(message.get_all("DKIM-Signature") or [])
    outcome = "none"
    verified = False
    checker = dkim.DKIM(raw, logger=log)
    for idx in range(signatures):
        try:
            valid = checker.verify(idx=idx, dnsfunc=dns_txt)
        except dkim.DKIMException as exc:
            log.info("DKIM signature %d of a mail from %s: %s", idx, from_domain, exc)
            valid = False
        signer = (checker.domain or b"").decode("ascii", "replace")
        if valid and _aligned(signer, from_domain):
            outcome, verified = "pass", True
            break
        outcome = "fail"
    return SenderCheck(verified, True, {"dkim": outcome}, "checked here", ("dkim",))


def _domain(value: str) -> str:
    """``header.d=gmail.com``, ``header.i=@gmail.com``, ``smtp.mailfrom=a@b.c`` -> domain."""
    return value.rpartition("@")[2].strip().strip(".").lower()


def _aligned(domain: str, from_domain: str) -> bool:
    """DMARC's relaxed alignment, without a public-suffix list: the same domain, or one a
    subdomain of the other (a signature by ``co.uk`` itself is not a practical threat)."""
    domain = domain.strip(".").lower()
    if not domain or not from_domain:
        return False
    return (
        domain == from_domain
        or from_domain.endswith("." + domain)
        or domain.endswith("." + from_domain)
    )
