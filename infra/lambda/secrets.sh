# Sourced (not run) by run.sh and with-secrets.sh at cold start.
#
# When GATEWAYZ_SECRETS_ARN names a Secrets Manager secret holding a JSON object of environment
# variables ({"OPENROUTER_API_KEY": "...", "STRIPE_SECRET_KEY": "...", ...}), export them before the
# app starts, so that shared/config.py reads them like any other setting. A variable that already
# has a non-empty value in the function's configuration wins. A secret that cannot be read stops
# the cold start: a gateway without its keys should fail loudly, not serve errors. The helper runs
# on the runtime's own boto3 (PYTHONPATH is the runtime's, not the function's vendored packages).
if [ -n "${GATEWAYZ_SECRETS_ARN:-}" ]; then
    if ! _gatewayz_exports="$(
        PYTHONPATH="${LAMBDA_RUNTIME_DIR:-/var/runtime}" \
            python3 -s "${LAMBDA_TASK_ROOT:-/var/task}/secrets_env.py"
    )"; then
        echo "gatewayz: could not load the secret ${GATEWAYZ_SECRETS_ARN}" >&2
        exit 1
    fi
    eval "$_gatewayz_exports"
    unset _gatewayz_exports
fi
