# Image for every Spanstream process (api, worker, migrate); docker-compose.yml picks one by command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . .
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --no-create-home spanstream

# The processes write nothing to the image, so they need no more than a plain user.
USER spanstream

EXPOSE 8000
CMD ["spanstream", "api"]
