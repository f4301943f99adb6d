# One image for every role: `docker run IMAGE agent` or `docker run IMAGE worker`.
FROM python:3.11-slim

# GnuPG decrypts the OpenPGP uploads (dropimport/openpgp.py), in a keyring of each call's own;
# tini, as PID 1, reaps the gpg-agent each call starts and stops (a daemon: its parent exits).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gnupg tini \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 dropimport \
    && mkdir /data && chown dropimport:dropimport /data

WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY schemas schemas
COPY dropimport dropimport
COPY agent agent
COPY worker worker
RUN pip install --no-cache-dir . && rm -rf /src

USER dropimport
WORKDIR /home/dropimport
ENV DROPIMPORT_HOME=/data \
    DROPIMPORT_FTP_HOST=0.0.0.0 \
    DROPIMPORT_METRICS_HOST=0.0.0.0 \
    DROPIMPORT_LOG_FORMAT=json \
    DROPIMPORT_ROLE=agent \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
# FTP control port and the passive range (set DROPIMPORT_FTP_PASSIVE_PORTS to match), SFTP
# (its host key is made once under /data), the agent's metrics and the worker's metrics.
EXPOSE 2121 60000-60100 2222 9180 9191

# The probe of the process the container runs: set DROPIMPORT_ROLE=worker for a worker.
HEALTHCHECK --interval=30s --timeout=15s --start-period=20s --retries=3 \
    CMD dropimport health "$DROPIMPORT_ROLE"

ENTRYPOINT ["tini", "--", "dropimport"]
CMD ["agent"]
