#!/bin/bash
# Start command of the streaming functions (chat, later messages) under the AWS Lambda Web Adapter.
#
# The adapter layer's /opt/bootstrap (AWS_LAMBDA_EXEC_WRAPPER) runs this script as the function's
# handler, waits until the app answers on AWS_LWA_PORT (AWS_LWA_READINESS_CHECK_PATH), then turns
# each invocation into a plain HTTP request and streams the response back to the RESPONSE_STREAM
# Function URL (AWS_LWA_INVOKE_MODE=response_stream). The process, and with it the runtime's
# pooled upstream client, lives as long as the execution environment.
#
# GATEWAYZ_ASGI_APP names the app (module:attribute), set per function in template.yaml.
set -euo pipefail

TASK_ROOT="${LAMBDA_TASK_ROOT:-/var/task}"
cd "$TASK_ROOT"
export PYTHONPATH="$TASK_ROOT${PYTHONPATH:+:$PYTHONPATH}"

# shellcheck source=secrets.sh
. "$TASK_ROOT/secrets.sh"

exec python3 -m uvicorn "${GATEWAYZ_ASGI_APP:?GATEWAYZ_ASGI_APP is not set}" \
    --host 127.0.0.1 --port "${AWS_LWA_PORT:-8080}" \
    --loop uvloop --http httptools \
    --no-access-log --log-level warning
