"""Per-request credentials for the provider rows whose auth is not a static key: `aws-sigv4`
(Bedrock: each request signed) and `google-oauth` (Vertex: a service account's access token).

A row that has an API key (a Bedrock API key, a static Vertex access token) already carries it in
its headers and needs nothing here. Signers and token caches live per process, on the runtime.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.providers import ProviderEndpoint
from shared.transport.aws_sigv4 import AwsSigner
from shared.transport.google_oauth import GoogleTokens, has_google_credentials
from shared.transport.upstream import UpstreamClient


class CloudAuth:
    def __init__(self, env: Mapping[str, str], http: UpstreamClient) -> None:
        self.aws = AwsSigner(env)
        self.google = GoogleTokens(env, http)
        self._google_account = has_google_credentials(env)

    async def authorize(
        self, endpoint: ProviderEndpoint, url: str, headers: dict[str, str], body: bytes
    ) -> None:
        auth = endpoint.provider.auth
        if auth == "aws-sigv4" and not endpoint.api_key:
            await self.aws.sign(url, headers, body, endpoint.params.get("region", "us-east-1"))
        elif auth == "google-oauth" and self._google_account:
            headers["authorization"] = f"Bearer {await self.google.token()}"
