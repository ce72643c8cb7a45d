# The outreach command line; by default the projector (see compose.yaml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
RUN pip install --no-cache-dir .

# /data is created here, owned by the non-root user, so a fresh named volume mounted on it
# inherits that ownership and the projector can write its DuckDB file there.
RUN useradd --system --create-home --uid 10001 --user-group outreach \
    && mkdir /data \
    && chown outreach:outreach /data
USER outreach
WORKDIR /data

CMD ["outreach", "project"]
