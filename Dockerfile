# One liveclass node (signaling + SFU + recorder + pages). docker-compose.yml runs two of them with Redis and coturn.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sfu sfu
COPY signaling signaling
COPY recorder recorder
COPY client_web client_web
RUN pip install --no-cache-dir .
# run from /app so the pages in /app/client_web are served (they are not part of the Python package)
ENTRYPOINT ["python", "-m", "signaling.cli", "serve"]
