# Python 3.11: the version requirements.txt is locked and tested for.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 NOTIFIER_DATA_DIR=/data
WORKDIR /app
RUN useradd --create-home --uid 1000 notifier && mkdir /data && chown notifier /data

# The locked dependencies first, hash-checked, in a layer of their own that a code change
# does not rebuild; then notifier itself, with nothing fetched. Editable, so the code finds
# templates/ and static/ beside it in /app.
COPY requirements.txt ./
RUN pip install --no-cache-dir --require-hashes -r requirements.txt
COPY pyproject.toml README.md ./
COPY notifier ./notifier
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e .
COPY templates ./templates
COPY static ./static
COPY samples ./samples
COPY web.py worker.py ./

USER notifier
EXPOSE 8000
CMD ["notifier", "web", "--host", "0.0.0.0", "--port", "8000"]
