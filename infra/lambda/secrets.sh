# Sourced (not run) by run.sh and with-secrets.sh at cold start.
#
# When GATEWAYZ_SECRETS_ARN names a Secrets Manager secret holding a JSON object of environment
# variables ({"OPENROUTER_API_KEY": "...", "STRIPE_SECRET_KEY": "...", ...}), or GATEWAYZ_SSM_PATH
# an SSM Parameter Store path with one parameter per variable, export them before the app starts,
# so that shared/config.py reads them like any other setting. A variable that already has a
# non-empty value in the function's configuration wins. A source that cannot be read stops the
# cold start: a gateway without its keys should fail loudly, not serve errors. The loader is
# shared/cloud_secrets.py (Powertools `parameters`), on the artifact's own packages (boto3 pinned
# with the vendored botocore, not the runtime's copy).
if [ -n "${GATEWAYZ_SECRETS_ARN:-}${GATEWAYZ_SSM_PATH:-}" ]; then
    if ! _gatewayz_exports="$(
        PYTHONPATH="${LAMBDA_TASK_ROOT:-/var/task}" python3 -s -m shared.cloud_secrets
    )"; then
        echo "gatewayz: could not load GATEWAYZ_SECRETS_ARN='${GATEWAYZ_SECRETS_ARN:-}' GATEWAYZ_SSM_PATH='${GATEWAYZ_SSM_PATH:-}'" >&2
        exit 1
    fi
    eval "$_gatewayz_exports"
    unset _gatewayz_exports
fi
