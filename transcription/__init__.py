"""Speech to text for voice notes, language detection for text, and machine translation.

This package knows nothing of conversations or messages (``inbox -> transcription ->
heliograph``): it turns audio files into transcripts, text into a language guess, and text
into other text. ``inbox.voice`` and ``inbox.translation`` apply it to the inbox's rows.
"""
