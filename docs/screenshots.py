"""The README's screenshots: what a newcomer sees after `make run`.

    .venv/bin/python docs/screenshots.py

Does what `make run` does, on a database of its own in a temporary folder and on free ports
(the sandbox on, as always with `heliograph demo`): `heliograph migrate`, `heliograph
seed-demo`, `heliograph demo`. It reads the demo accounts the service prints, waits until the
workers have translated the showcase conversations, signs in as Oliver (a lead) through the
sign-in page in Debian's Chromium (Playwright; no browser is downloaded) and writes:

    docs/img/inbox.png         the inbox (Oliver's conversations: several channels, languages)
    docs/img/conversation.png  a WhatsApp voice note, its transcript and English translation
    docs/img/customer.png      that customer's profile: the journey map, scores, interventions
    docs/img/inbox-phone.png   the inbox on a phone (375 px wide)
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "docs" / "img"
HELIOGRAPH = ROOT / ".venv" / "bin" / "heliograph"
CHROMIUM = "/usr/bin/chromium"
MEMBER = "oliver@heliograph.example"
CUSTOMER = "Beatriz Souza"  # the showcase's voice note (service/demo.py, SHOWCASE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(HELIOGRAPH), *args], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"heliograph {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def wait_for(what: str, check: Any, within_s: float, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"heliograph demo stopped while waiting for {what}")
        if check():
            return
        time.sleep(0.5)
    sys.exit(f"gave up waiting for {what} after {within_s:.0f} s")


def password_of(log: Path, email: str) -> str | None:
    """The password ``heliograph demo`` printed for ``email`` in its sign-in table."""
    found = re.search(rf"^\s+{re.escape(email)}\s+\w+\s+(\S+)\s*$", log.read_text(), re.M)
    return found.group(1) if found else None


def translated(db: Path) -> bool:
    """Every showcase message not in English has its translation (the workers ran)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT translation_status FROM message WHERE provider_message_id LIKE "
            "'demo-showcase-%' AND direction = 'in'"
        ).fetchall()
    return bool(rows) and sum(1 for (s,) in rows if s == "done") >= len(rows) - 1


def up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


async def shoot(url: str, password: str) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )

        async def signed_in(width: int, height: int) -> Any:
            context = await browser.new_context(
                viewport={"width": width, "height": height}, base_url=url, locale="en-GB"
            )
            page = await context.new_page()
            await page.goto("/sign-in")
            await page.fill("#email", MEMBER)
            await page.fill("#password", password)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{url}/")
            return page

        page = await signed_in(1280, 800)
        await page.wait_for_selector(f"text={CUSTOMER}")
        await page.screenshot(path=str(IMG / "inbox.png"))

        await page.click(f"a:has-text('{CUSTOMER}')")
        await page.wait_for_selector("figure.voice")
        await page.wait_for_load_state("networkidle")
        await page.screenshot(path=str(IMG / "conversation.png"))

        await page.click(f"h1 a:has-text('{CUSTOMER}')")
        await page.wait_for_selector("ol.cu-journey")
        await page.wait_for_load_state("networkidle")
        await page.screenshot(path=str(IMG / "customer.png"))

        phone = await signed_in(375, 812)
        await phone.wait_for_selector(f"text={CUSTOMER}")
        await phone.screenshot(path=str(IMG / "inbox-phone.png"))
        await browser.close()


def main() -> int:
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing (make install-test installs Debian's chromium)")
    fonts = subprocess.run(["fc-list"], capture_output=True, text=True, check=False).stdout
    if "emoji" not in fonts.lower():  # the voice note's 🎤 would be drawn as a box
        print("warning: no emoji font (apt-get install fonts-noto-color-emoji)", file=sys.stderr)
    IMG.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="heliograph-screenshots-") as tmp:
        db = Path(tmp) / "demo.db"
        port, sandbox_port = free_port(), free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HELIOGRAPH_")},
            "HELIOGRAPH_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
            "HELIOGRAPH_MEDIA_DIR": str(Path(tmp) / "media"),
            "HELIOGRAPH_LOG_FORMAT": "text",
            "HELIOGRAPH_SMTP_LISTEN_PORT": str(free_port()),  # not make run's 2525
        }
        run(env, "migrate")
        print(run(env, "seed-demo").strip())
        log = Path(tmp) / "demo.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [str(HELIOGRAPH), "demo", "--port", str(port), "--sandbox-port", str(sandbox_port)],
                env={**env, "HELIOGRAPH_DEMO_MODE": "1"},
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for("the service", lambda: up(url), 120, proc)
            password = password_of(log, MEMBER)
            if password is None:
                sys.exit(f"heliograph demo printed no account for {MEMBER}:\n{log.read_text()}")
            wait_for("the showcase's translations", lambda: translated(db), 300, proc)
            asyncio.run(shoot(url, password))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    for name in ("inbox", "conversation", "customer", "inbox-phone"):
        print(f"wrote docs/img/{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
