# Ferryman, as the README's "Containers" section describes it: the package with its
# PostgreSQL and Redis extras, pinned by constraints.txt, run as an unprivileged user.
FROM python:3.11-slim AS build
WORKDIR /src
# The build backend's own environment takes the same pins.
ENV PIP_CONSTRAINT=/src/constraints.txt PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN pip install --prefix=/install '.[postgres,redis]'

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/ferryman ferryman \
    && mkdir -p /var/lib/ferryman/data \
    && chown -R ferryman:ferryman /var/lib/ferryman \
    && chmod 0700 /var/lib/ferryman/data
COPY --from=build /install /usr/local
USER ferryman
WORKDIR /var/lib/ferryman
ENV FERRYMAN_DATA_DIR=/var/lib/ferryman/data \
    FERRYMAN_HOST=0.0.0.0 \
    FERRYMAN_PORT=8080 \
    PYTHONUNBUFFERED=1
# SQLite and generated secrets live here when no database URL or secrets are given.
VOLUME ["/var/lib/ferryman/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health/live', timeout=2).status != 200)"]
CMD ["ferryman", "serve"]
