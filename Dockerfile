# Moorage container image.
#   docker build -t moorage .
#   docker run -d -p 5000:5000 -v /opt/data/registry:/var/lib/registry moorage
# BASE must be a Debian-like image with python3 (>= 3.11, with venv) at the same path in both stages.
# Offline builds: put wheels in the context and pass --build-arg PIP_NO_INDEX=1 PIP_FIND_LINKS=/src/wheels.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY . /src
RUN python3 -m venv /opt/moorage \
 && /opt/moorage/bin/pip install "/src[granian]" \
 && find /opt/moorage -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE}
RUN groupadd --system --gid 5000 moorage \
 && useradd --system --uid 5000 --gid moorage --no-create-home --home-dir /var/lib/registry \
      --shell /usr/sbin/nologin moorage \
 && mkdir -p /var/lib/registry /etc/moorage \
 && chown moorage:moorage /var/lib/registry
COPY --from=build /opt/moorage /opt/moorage
COPY docs/deploy/docker/config.yml /etc/moorage/config.yml
COPY docs/deploy/docker/entrypoint.sh /usr/local/bin/moorage-entrypoint
ENV PATH=/opt/moorage/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    MOORAGE_HEALTHCHECK_URL=http://127.0.0.1:5001/readyz
VOLUME /var/lib/registry
EXPOSE 5000
# The default config serves /readyz on the container's loopback (http.debug.addr 127.0.0.1:5001),
# which works whether or not the main listener uses TLS.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['MOORAGE_HEALTHCHECK_URL'], timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["moorage-entrypoint"]
CMD ["moorage", "serve", "/etc/moorage/config.yml"]
