# The trajlake image: every service in compose/compose.yaml runs it, with the same CLI as a
# local run (`trajlake stage rollout1`, `trajlake status`, …). Build: docker compose build
# (from compose/), or `docker build -t trajlake .` here.
FROM python:3.11-slim

# bubblewrap: the rollout sandbox; git: checkouts and the commits producer
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap git \
    && rm -rf /var/lib/apt/lists/*
# repositories are mounted from the host under another owner: let git read them
RUN git config --system --add safe.directory '*'

WORKDIR /opt/trajlake
COPY . .
RUN pip install --no-cache-dir ".[agent]"

WORKDIR /data
ENTRYPOINT ["trajlake"]
CMD ["--help"]
