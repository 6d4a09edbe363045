"""aiogram is imported when first used, its types built when used (channels/telegram/lean.py).

In a fresh interpreter (the test process has long imported everything): the service's
import does not import aiogram (~1.5 s of CPU at every process start); its first use
leaves aiogram's ~400 models unbuilt; an update with a photo, a voice note, a
document, a reply and a forward still parses to the same values; a Bot method that holds
types builds too.
"""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import json
import sys
import service.app  # what `heliograph serve` imports
aiogram_at_start = "aiogram" in sys.modules

from channels.telegram.lean import Update  # the first use imports aiogram
import aiogram.types as types
from pydantic import BaseModel

models = [m for m in vars(types).values() if isinstance(m, type) and issubclass(m, BaseModel)]
built_at_import = sum(1 for m in models if m.__pydantic_complete__)

from aiogram.methods import SendPhoto
user = {"id": 7, "is_bot": False, "first_name": "Ana", "language_code": "es"}
chat = {"id": 7, "type": "private", "first_name": "Ana"}
update = Update.model_validate({
    "update_id": 1,
    "message": {
        "message_id": 5, "date": 1700000000, "chat": chat, "from": user,
        "caption": "mi recibo",
        "photo": [{"file_id": "p1", "file_unique_id": "u1", "width": 90, "height": 90}],
        "document": {"file_id": "d1", "file_unique_id": "u2", "file_name": "a.pdf"},
        "voice": {"file_id": "v1", "file_unique_id": "u3", "duration": 3},
        "reply_to_message": {"message_id": 4, "date": 1699999999, "chat": chat, "text": "hola"},
        "forward_origin": {"type": "user", "date": 1699999990, "sender_user": user},
    },
})
m = update.message
method = SendPhoto(chat_id=7, photo="p1", caption="ok")
print(json.dumps({
    "aiogram_at_start": aiogram_at_start,
    "models": len(models),
    "built_at_import": built_at_import,
    "values": [m.from_user.first_name, m.caption, m.photo[0].file_id, m.document.file_name,
               m.voice.duration, m.reply_to_message.text, m.forward_origin.sender_user.id,
               method.caption],
}))
"""


def test_the_service_imports_aiogram_when_used_without_building_its_types() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["aiogram_at_start"] is False  # a process without Telegram never pays for it
    assert seen["models"] > 300  # aiogram's types, all importable
    assert seen["built_at_import"] < 10, seen  # not ~400 built validators
    assert seen["values"] == ["Ana", "mi recibo", "p1", "a.pdf", 3, "hola", 7, "ok"]
