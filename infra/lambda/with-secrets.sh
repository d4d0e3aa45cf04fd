#!/bin/bash
# AWS_LAMBDA_EXEC_WRAPPER of the Mangum functions (catalog, health, ...): load the secrets named
# by GATEWAYZ_SECRETS_ARN into the environment, then start the Python runtime unchanged.
# Without GATEWAYZ_SECRETS_ARN it only costs one exec.
set -euo pipefail

# shellcheck source=secrets.sh
. "${LAMBDA_TASK_ROOT:-/var/task}/secrets.sh"

exec "$@"
