"""Fake platform servers for end-to-end tests (real client libraries talk to them over 127.0.0.1)."""
