"""Chat history (issue 18, SPEC §9): opt-in sessions and messages written after the answer
(`recorder`), their storage, search, share links and retention (`store`), feedback on answers
(`feedback`), and what the text of a request or answer is (`extract`)."""
