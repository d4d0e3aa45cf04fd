"""AWS Signature Version 4 for Bedrock calls, with botocore's signer and credential chain.

Credentials, in the order of AWS's standard chain
(https://docs.aws.amazon.com/sdkref/latest/guide/standardized-credentials.html): the
`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`(/`AWS_SESSION_TOKEN`) of the gateway's settings (on
Lambda the function role's, set by the runtime), else botocore's own chain — `AWS_PROFILE` and the
shared config/credentials files, web identity, the container (ECS) and instance (IMDS) roles.
Resolving the chain and refreshing a role's credentials may read files or call a metadata
endpoint, so both run in a worker thread; static keys sign without leaving the event loop. Only the
signing comes from botocore (`SigV4Auth`, service `bedrock`): the request itself goes out on the
gateway's own HTTP client. botocore is imported on the first Bedrock call, never at start-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from shared.transport.errors import UpstreamError

SERVICE = "bedrock"  # the signing name of bedrock-runtime
# What else in the environment says where the chain would find credentials.
CHAIN_SIGNALS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


def has_aws_credentials(env: Mapping[str, str]) -> bool:
    """Whether the environment points the standard chain at credentials (EC2 instance roles need
    `AWS_PROFILE` or another signal: the gateway does not probe the metadata endpoint at start)."""
    return any(env.get(name) for name in CHAIN_SIGNALS)


class AwsSigner:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self._credentials: Any = None  # botocore Credentials or RefreshableCredentials

    def _resolve(self) -> Any:
        from botocore.credentials import Credentials

        key, secret = self._env.get("AWS_ACCESS_KEY_ID"), self._env.get("AWS_SECRET_ACCESS_KEY")
        if key and secret:
            return Credentials(key, secret, self._env.get("AWS_SESSION_TOKEN") or None)
        import botocore.session

        session = botocore.session.Session()
        if self._env.get("AWS_PROFILE"):
            session.set_config_variable("profile", self._env["AWS_PROFILE"])
        try:
            return session.get_credentials()
        except Exception as exc:  # botocore raises many kinds (profile not found, bad files)
            raise UpstreamError(None, f"AWS credentials could not be loaded: {exc}", kind="connect") from None

    async def frozen(self) -> Any:
        creds = self._credentials
        if creds is None:
            creds = self._credentials = await asyncio.to_thread(self._resolve)
        if creds is None:
            raise UpstreamError(None, "no AWS credentials were found for Bedrock", kind="connect")
        refresh = getattr(creds, "refresh_needed", None)
        if refresh is not None and refresh():
            return await asyncio.to_thread(creds.get_frozen_credentials)
        return creds.get_frozen_credentials()

    async def sign(self, url: str, headers: dict[str, str], body: bytes, region: str) -> None:
        """Add `authorization`, `x-amz-date` (and `x-amz-security-token`) to `headers`, signing the
        host, the content type and the body's hash."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        creds = await self.frozen()
        signed = {"content-type": headers.get("content-type", "application/json")}
        request = AWSRequest(method="POST", url=url, data=body, headers=signed)
        SigV4Auth(creds, SERVICE, region).add_auth(request)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            value = request.headers.get(name)
            if value:
                headers[name.lower()] = value
