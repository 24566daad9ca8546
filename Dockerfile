# School assistant (Trợ lý nhà trường) — Telegram / Zalo / web chat bot.
#
#   docker build -t school-assistant .
#   docker run -d --name school -v school-data:/data -p 127.0.0.1:8080:8080 \
#     -e TELEGRAM_BOT_TOKEN=123456:ABC... -e WEB_CHAT_ENABLED=false school-assistant
#
# The container listens on 0.0.0.0:8080 (WEB_HOST=0.0.0.0). Because that is not a loopback address
# the bot refuses to start unless you either set WEB_CHAT_PASSWORD (web chat protected by a
# password) or WEB_CHAT_ENABLED=false (only Telegram / Zalo and webhooks are served).
# Data (SQLite database unless DATABASE_URL is set, media, clips) lives in the /data volume.
# Other commands: docker run --rm -v school-data:/data school-assistant import-staff /data/staff.xlsx
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data \
    WEB_HOST=0.0.0.0 \
    WEB_PORT=8080 \
    TZ=Asia/Ho_Chi_Minh

RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg tzdata \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first (cached while only the code changes).
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY README.md main.py babel.cfg ./
COPY bot ./bot
COPY storage ./storage
COPY media ./media
COPY locales ./locales
RUN pip install --no-deps . \
 && python -m compileall -q bot storage media main.py

RUN groupadd --system --gid 10001 school \
 && useradd --system --uid 10001 --gid school --home-dir /data --shell /usr/sbin/nologin school \
 && mkdir -p /data \
 && chown school:school /data
USER school
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"WEB_PORT\", \"8080\")}/healthz', timeout=4)" || exit 1

ENTRYPOINT ["python", "/app/main.py"]
CMD ["run"]
