# syntax=docker/dockerfile:1
# The netprobe agent, for linux/amd64, linux/arm64 and linux/arm/v7:
#
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 -t netprobe:0.1.0 .
#   docker run -d --name netprobe --cap-add NET_RAW -p 9469:9469 \
#       -v /srv/netprobe/agent.yml:/etc/netprobe/agent.yml:ro -v netprobe-data:/var/lib/netprobe \
#       netprobe:0.1.0
#
# Without a registry (or Docker): probes/docker/build-image.sh builds the Debian base itself and
# the image with podman. The install steps are scripts in probes/docker/, run here and by
# tests/test_probes.py. Debian's own python3 and its builds of cffi, psutil and PyYAML (no armv7
# wheel on PyPI) mean no compiler in any stage, on any architecture.
ARG BASE_IMAGE=debian:bookworm-slim

# ---- base: Debian's Python 3.11 and the three compiled dependencies Debian builds ------------
FROM ${BASE_IMAGE} AS base
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 python3-cffi python3-psutil python3-yaml ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log \
        /var/cache/debconf/*-old /var/lib/dpkg/*-old

# ---- wheels: netprobe, every other dependency and pip itself, fetched once ---------------------
FROM base AS wheels
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log \
        /var/cache/debconf/*-old /var/lib/dpkg/*-old
# A build host whose TLS goes through its own CA mounts that bundle and names it here.
ARG PIP_CERT
ARG SSL_CERT_FILE
ARG REQUESTS_CA_BUNDLE
WORKDIR /src
COPY pyproject.toml README.md ./
COPY netprobe ./netprobe
COPY probes/docker/build-wheels.sh probes/docker/debian-pins.py /usr/local/bin/
RUN build-wheels.sh /src /wheels

# ---- the image: a venv from those wheels (pip runs from its wheel and is not kept), non-root ----
# Everything that does not depend on netprobe's code comes before the venv, so a rebuild after a
# code change redoes only the venv, USER and VOLUME steps (each step is a whole copy of the
# filesystem under podman's vfs storage).
FROM base
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="netprobe" \
      org.opencontainers.image.description="Broadband and cloud-drive compliance probe: measures the line against the contract, keeps the evidence." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/netprobe/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NETPROBE_HEALTH_URL=http://127.0.0.1:9469/-/healthy
EXPOSE 9469
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/bin/healthcheck.py"]
ENTRYPOINT ["netprobe"]
CMD ["agent", "--config", "/etc/netprobe/agent.yml"]
COPY probes/docker/install-venv.sh probes/docker/healthcheck.py /usr/local/bin/
COPY --chmod=0644 probes/docker/agent.yml /etc/netprobe/agent.yml
# podman 4.3's builder reuses a cached RUN whose bind mount changed: build-image.sh passes a
# digest of what went into the wheels, so a code change rebuilds the venv (Docker needs none).
ARG SOURCE_DIGEST
# scapy's contrib layers (9 MB: protocols from automotive buses to industrial ones) are never
# imported: a probe uses scapy's IP/ICMP/TCP layers alone (netprobe/measure/latency.py).
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    install-venv.sh /wheels /opt/netprobe \
    && rm -rf /opt/netprobe/lib/python3*/site-packages/scapy/contrib \
    && /opt/netprobe/bin/python -c "import scapy.layers.inet, scapy.sendrecv" \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/netprobe \
        --shell /usr/sbin/nologin netprobe \
    && install -d -o netprobe -g netprobe -m 0750 /var/lib/netprobe
USER netprobe:netprobe
VOLUME ["/etc/netprobe", "/var/lib/netprobe"]
