"""``POST /api/v1/team-members/me/telegram-link``: a one-time code to link a Telegram chat."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from surfaces.telegram_links import issue_link_code
from web.deps import MemberDep, SessionDep

router = APIRouter(prefix="/team-members", tags=["team"])


class TelegramLinkOut(BaseModel):
    code: str = Field(description="Works once, until expires_at; only its hash is stored.")
    expires_at: datetime
    bot_command: str = Field(description="What to send the bot in a private chat.")


@router.post("/me/telegram-link", response_model=TelegramLinkOut, status_code=201)
async def telegram_link(session: SessionDep, member: MemberDep) -> TelegramLinkOut:
    """Send ``bot_command`` to the bot within 15 minutes (``LINK_TTL``): that chat
    becomes yours (customers' messages and notices arrive there). A new code replaces any
    earlier unused one."""
    code, expires = await issue_link_code(session, member)
    await session.commit()
    return TelegramLinkOut(code=code, expires_at=expires, bot_command=f"/link {code}")
