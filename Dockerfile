# syntax=docker/dockerfile:1
# The one trenchcoat image: every service runs from it as `python -m <module>` (see
# k8s/base/workloads.yaml). Build with `make image` (IMAGE=trenchcoat:<version>).

# --- build: a venv with the package and its dependencies (all from wheels) -------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/trenchcoat
WORKDIR /src
COPY pyproject.toml README.md ./
COPY trenchcoat ./trenchcoat
COPY directory ./directory
COPY store ./store
COPY cache ./cache
COPY router ./router
COPY transformer ./transformer
COPY f4 ./f4
COPY feedsvc ./feedsvc
COPY bench ./bench
RUN /opt/trenchcoat/bin/pip install --no-compile . \
 && /opt/trenchcoat/bin/python -m compileall -q /opt/trenchcoat/lib

# --- run: the venv, nginx for the CDN workload, a non-root user; no compilers ----------
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx-light \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin trenchcoat
COPY --from=build /opt/trenchcoat /opt/trenchcoat
ENV PATH=/opt/trenchcoat/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TRENCHCOAT_CONFIG=/etc/trenchcoat/trenchcoat.toml
WORKDIR /data
USER 10001:10001
CMD ["trenchcoat", "--help"]
