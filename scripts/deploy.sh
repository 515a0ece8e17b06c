#!/usr/bin/env bash
# Deploy one image tag of the crawl service on this host, or roll back to one.
#
# Usage: ./deploy.sh TAG
#
# Run it from the folder on the VM that contains compose.yaml, nginx/ and .env
# (CI copies this script there as deploy.sh). TAG is a tag that CI pushed: a
# 40-digit commit SHA, or latest. The script
#
#   1. pulls the images, with CRAWLER_TAG=TAG;
#   2. starts the containers whose image or settings changed and waits until
#      every service with a health check reports healthy;
#   3. checks nginx's config and reloads it, so a changed file in nginx/ takes
#      effect without a restart;
#   4. records TAG as CRAWLER_TAG in .env, so that a later `docker compose up -d`
#      keeps this version.
#
# .env changes only after a successful deploy, so after a failure it still
# names the version that ran before.
#
# NOTE: Compose replaces the app replicas without a rolling update. Requests
# sent while the replicas restart may get a 502 problem document from nginx
# for a few seconds.
set -euo pipefail

readonly ENV_FILE=.env
readonly WAIT_TIMEOUT_S=300

fail() {
    echo "deploy.sh: error: $*" >&2
    exit "${EXIT_STATUS:-1}"
}

tag="${1:-}"
# Docker's grammar for a tag: up to 128 letters, digits, '_', '.' and '-',
# not starting with '.' or '-'. It also keeps shell syntax out of .env.
if [[ $# -ne 1 || ! "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
    EXIT_STATUS=2 fail "expected one image tag, such as a 40-digit commit SHA" \
        "or latest, got '${*}'. Usage: ./deploy.sh TAG"
fi

cd "$(dirname "${BASH_SOURCE[0]}")"
if [[ ! -f "$ENV_FILE" ]]; then
    fail "no $ENV_FILE in $PWD; copy .env.example to $ENV_FILE and set MONGO_PASSWORD"
fi

echo "==> Pulling the images for tag $tag"
export CRAWLER_TAG="$tag"
docker compose pull

echo "==> Starting the containers and waiting until they are healthy"
docker compose up --detach --remove-orphans --wait --wait-timeout "$WAIT_TIMEOUT_S"

echo "==> Reloading nginx's configuration"
docker compose exec -T nginx nginx -t
docker compose exec -T nginx nginx -s reload

echo "==> Recording CRAWLER_TAG=$tag in $ENV_FILE"
# A new file renamed over the old one, so an interrupted write cannot leave a
# half-written .env. mktemp creates it readable by its owner only.
new_env="$(mktemp "$ENV_FILE.XXXXXX")"
trap 'rm -f "$new_env"' EXIT
# grep exits 1 when it selects no line (a .env with only CRAWLER_TAG); 2 is an error.
grep -v '^CRAWLER_TAG=' "$ENV_FILE" >"$new_env" || [[ $? -eq 1 ]]
printf 'CRAWLER_TAG=%s\n' "$tag" >>"$new_env"
mv -f "$new_env" "$ENV_FILE"
trap - EXIT

docker compose ps
echo "==> Deployed $tag"
