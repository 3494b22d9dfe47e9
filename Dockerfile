FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 NOTIFIER_DATA_DIR=/data
WORKDIR /app
RUN useradd --create-home --uid 1000 notifier && mkdir /data && chown notifier /data

COPY pyproject.toml README.md ./
COPY notifier ./notifier
RUN pip install --no-cache-dir -e .
COPY templates ./templates
COPY static ./static
COPY samples ./samples
COPY web.py worker.py ./

USER notifier
EXPOSE 8000
CMD ["notifier", "web", "--host", "0.0.0.0", "--port", "8000"]
