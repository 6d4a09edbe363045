"""What the spoken test clips say (espeak-ng speaks them; tests and bench/transcribe.py),
the clips, and ffmpeg to convert them."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

# What each clip says; the tests check whisper's words against these.
SPEECH = {
    "en": ("en-us", "Hello, my order has not arrived yet. Can you help me track the package?"),
    "es": ("es-419", "Buenos días. Quiero cambiar la dirección de entrega de mi pedido."),
    "fr": ("fr", "Bonjour. Je voudrais changer l'adresse de livraison de ma commande."),
}
LONG_EN = [
    "Good morning, I am writing about the order I placed last week.",
    "The package was supposed to arrive on Monday, but nothing came.",
    "The tracking page has not changed for four days.",
    "I paid for express delivery because I need it for a birthday.",
    "Could you please check where the parcel is and tell me when it will arrive?",
    "If it is lost, I would like a refund or a new package sent today.",
    "Thank you very much for your help, I will wait for your answer.",
    "My name is Maria and my order number is on the receipt in the email.",
    "You can also call me in the afternoon, I am at home after three.",
]


@dataclass(frozen=True)
class Clip:
    path: Path
    text: str
    language: str


def ffmpeg(src: Path, dst: Path, *args: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), *args, str(dst)],
        check=True,
    )
    return dst
