# The CDS Hooks service (`cds serve`) in a container: docs/deploy.md.
#
#   docker build -t cds .
#   docker run -p 8080:8080 -v ./deploy/service.yaml:/etc/cds/service.yaml:ro \
#              -v ./site-packs:/srv/cds/rulesets:ro -e CDS_ADMIN_TOKEN=... cds
#
# Volumes: /etc/cds (the config, service.yaml), /srv/cds/rulesets (a site's own rule packs,
# listed in the config's `rulesets`), /var/lib/cds (the SQLite store when no PostgreSQL URL is
# given). The service runs as the unprivileged user `cds` (uid 10001).

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cds ./cds
COPY rulesets ./rulesets
RUN python -m venv /opt/cds && /opt/cds/bin/pip install .

FROM python:3.11-slim-bookworm
ENV PATH=/opt/cds/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XDG_DATA_HOME=/var/lib \
    CDS_FEEDBACK_DB=/var/lib/cds/feedback.sqlite3
RUN groupadd --system --gid 10001 cds \
    && useradd --system --uid 10001 --gid cds --home-dir /var/lib/cds --no-create-home \
       --shell /usr/sbin/nologin cds \
    && mkdir -p /etc/cds /srv/cds/rulesets /var/lib/cds \
    && chown cds:cds /var/lib/cds
COPY --from=build /opt/cds /opt/cds
COPY deploy/service.yaml /etc/cds/service.yaml
USER cds
WORKDIR /var/lib/cds
VOLUME ["/etc/cds", "/srv/cds/rulesets", "/var/lib/cds"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["cds"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--config", "/etc/cds/service.yaml"]
