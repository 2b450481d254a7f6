# syntax=docker/dockerfile:1
# The one image every sagesf process runs from: both connectors, the processors, the linker, the
# web console, the sandbox's
# Salesforce emulator and the init jobs (topics, schemas, the sandbox Sage 100 database).
# docker-compose.yml and deploy/k8s/ pick the process with the command, e.g.
#   python -m sagesf run salesforce-sink | python -m sagesf run processors | sagesf topics apply
# Build: docker build -t sagesf:dev .
#
# Python 3.11 on Debian 12 (bookworm), the same Python and Debian release the project is tested
# on; unixODBC and the SQLite ODBC driver are what the Sage 100 connector reads the sandbox
# company through (a real installation adds its own ODBC driver, or runs the connector on the
# Sage host: deploy/k8s/README.md).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# libsqliteodbc's install script registers the {SQLite3} driver in /etc/odbcinst.ini. Versions are
# not pinned: the bookworm packages get security updates, and the tag pins the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends unixodbc libsqliteodbc \
    && rm -rf /var/lib/apt/lists/* \
    && odbcinst -q -d -n SQLite3

WORKDIR /app

# Dependencies first, pinned by requirements.lock, so a source change does not reinstall them.
# Every one of them ships a manylinux wheel: no compiler in the image.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --only-binary=:all: -c requirements.lock -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The code and the files it reads at run time, relative to /app: topics.yaml, schemas/, mappings/,
# salesforce/ (the sfdx project `sagesf preflight salesforce` checks an org against).
# An editable install keeps the package's paths pointing at /app (the Salesforce source finds
# mappings/ beside its package) and registers the `sagesf` command and its command groups.
COPY README.md topics.yaml ./
COPY schemas/ schemas/
COPY mappings/ mappings/
COPY salesforce/ salesforce/
COPY sagesf/ sagesf/
COPY connectors/ connectors/
COPY processors/ processors/
COPY linking/ linking/
COPY console/ console/
COPY sandbox/ sandbox/
RUN pip install --no-deps -e . && sagesf --help >/dev/null

# Not root. The data directories are owned by the process user, so named volumes mounted there
# start writable: processors' faust state, the console's users and audit log, the mapping files
# the console saves (docker-compose.yml's mappings volume), the emulator's org, the sandbox Sage
# 100 company.
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin sagesf \
    && mkdir -p /var/lib/sagesf/processors /var/lib/sagesf/console /var/lib/sagesf/mappings /var/lib/sagesf/sandbox /var/lib/salesforce-emulator /var/lib/sage100 \
    && chown -R sagesf /var/lib/sagesf /var/lib/salesforce-emulator /var/lib/sage100
USER 10001

# /metrics and /healthz of every process (SAGESF_METRICS__PORT); HOME on /tmp, the one writable
# place when Kubernetes mounts the root filesystem read-only
ENV SAGESF_METRICS__HOST=0.0.0.0 \
    SAGESF_METRICS__PORT=9400 \
    SAGESF_PROCESSORS__DATA_DIR=/var/lib/sagesf/processors \
    SAGESF_SANDBOX_DIR=/var/lib/sagesf/sandbox \
    HOME=/tmp
EXPOSE 9400 8600

CMD ["sagesf", "--help"]
