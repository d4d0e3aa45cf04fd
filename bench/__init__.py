"""The Gatewayz benchmark suite (issue 5): gateway overhead next to a direct call and LiteLLM."""
