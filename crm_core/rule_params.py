"""Every intervention rule parameter with its type and range, one pydantic model per rule.

A setting outside its range is refused when an operator makes it (the rules API answers
422 naming the parameter and what it may be) and, stored before these checks existed,
keeps only its own rule from running (``crm_core.triggers.load_rules`` marks the rule,
the pass skips it and says so). The ranges are what a rule can mean, and they keep every
``now - timedelta(days=...)`` a finder computes inside the calendar: a ``days`` of 10**12
overflowed ``timedelta`` and stopped the whole trigger pass.

Messages are checked too: only the placeholders a rule fills in, each as a plain name
(``{first_name}``, never ``{first_name.__class__}`` or ``{0}``), so formatting one
cannot fail in the pass either.
"""

from __future__ import annotations

import string
from typing import Any

from annotated_types import Ge, Le
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DAY_LIMIT = 3650  # ten years: any look-back or cool-down a rule can sensibly want
PLACEHOLDERS = ("first_name", "program", "next_program", "milestone")


class RuleParamError(ValueError):
    """A parameter value a rule cannot use (the message names it and its range)."""


class _Params(BaseModel):
    # Strict: a stored "7" or true is a mistake to report, not to guess at. Unknown keys
    # (a parameter an older version had) are ignored when read; the API refuses them.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class InactivityParams(_Params):
    days: int = Field(7, ge=1, le=365, description="Quiet this many days before a nudge.")
    max_days: int = Field(30, ge=1, le=DAY_LIMIT, description="Not after this many days.")

    @model_validator(mode="after")
    def _window(self) -> InactivityParams:
        if self.max_days < self.days:
            raise ValueError(f"max_days ({self.max_days}) must be at least days ({self.days})")
        return self


class LowEngagementParams(_Params):
    below: int = Field(25, ge=0, le=100, description="Engagement score (0-100) below this.")
    grace_days: int = Field(14, ge=0, le=365, description="Not in an enrollment's first days.")
    cooldown_days: int = Field(30, ge=0, le=DAY_LIMIT, description="Quiet after firing.")


class UpsellParams(_Params):
    min_engagement: int = Field(70, ge=0, le=100, description="Engagement at least this.")
    within_days: int = Field(30, ge=1, le=DAY_LIMIT, description="Completed this recently.")


class MilestoneParams(_Params):
    within_days: int = Field(7, ge=1, le=365, description="Reported this recently.")


class SupportParams(_Params):
    tickets: int = Field(3, ge=1, le=1000, description="This many open tickets or more...")
    within_days: int = Field(30, ge=1, le=DAY_LIMIT, description="...opened this recently.")
    cooldown_days: int = Field(30, ge=0, le=DAY_LIMIT, description="Quiet after firing.")


PARAMS: dict[str, type[_Params]] = {
    "inactivity_nudge": InactivityParams,
    "low_engagement": LowEngagementParams,
    "upsell": UpsellParams,
    "milestone_celebration": MilestoneParams,
    "support_outreach": SupportParams,
}


def defaults(rule: str) -> dict[str, int]:
    return PARAMS[rule]().model_dump()


def limits(rule: str) -> dict[str, tuple[int, int]]:
    """Each parameter's allowed range, inclusive: ``{"days": (1, 365), ...}``."""
    found: dict[str, tuple[int, int]] = {}
    for key, info in PARAMS[rule].model_fields.items():
        low = next(m.ge for m in info.metadata if isinstance(m, Ge))
        high = next(m.le for m in info.metadata if isinstance(m, Le))
        found[key] = (int(low), int(high))  # type: ignore[call-overload]
    return found


def check_params(rule: str, params: dict[str, Any]) -> dict[str, int]:
    """The rule's full parameters (defaults for what ``params`` leaves out), or
    ``RuleParamError`` saying which one is wrong and what it may be."""
    model = PARAMS[rule]
    try:
        return model.model_validate(params).model_dump()
    except ValidationError as exc:
        raise RuleParamError(_explain(rule, params, exc)) from None


def _explain(rule: str, params: dict[str, Any], exc: ValidationError) -> str:
    ranges = limits(rule)
    problems = []
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else ""
        if key in ranges:
            low, high = ranges[key]
            got = repr(params.get(key))[:40]
            problems.append(f"{rule}.{key} must be a whole number from {low} to {high} (got {got})")
        else:  # a rule across parameters (max_days >= days)
            problems.append(f"{rule}: {str(error['msg']).removeprefix('Value error, ')}")
    return "; ".join(problems)


def check_message(rule: str, message: str) -> None:
    """Only plain placeholders this service fills in, and well-formed braces."""
    if not message.strip():
        raise RuleParamError("the message cannot be empty")
    try:
        parts = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(message)]
    except ValueError as exc:
        raise RuleParamError(f"{rule}: the message has unmatched braces ({exc})") from None
    allowed = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
    for name, spec, conv in parts:
        if name is not None and (name not in PLACEHOLDERS or spec or conv):
            raise RuleParamError(
                f"{rule}: a message may use only {allowed} as placeholders (and {{{{ or }}}} "
                f"for a brace); it has {{{name}{'!' + conv if conv else ''}"
                f"{':' + spec if spec else ''}}}"
            )
