# One image for every part: `pgwarden api`, `pgwarden hub`, `pgwarden migrate`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pgwarden ./pgwarden
COPY core ./core
COPY vaultapi ./vaultapi
COPY wshub ./wshub
COPY db ./db
RUN pip install --no-cache-dir . && useradd --system --uid 10001 pgwarden

# Containers may bind ports below 1024 without privileges (Docker sets
# net.ipv4.ip_unprivileged_port_start=0), so the API keeps its usual port 80.
USER pgwarden
EXPOSE 80 3012
CMD ["pgwarden", "api"]
