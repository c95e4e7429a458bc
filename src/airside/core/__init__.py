"""Shared pieces every layer may use: logging, auth, API schemas and routes, the web client."""
