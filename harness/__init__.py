"""Runs and reports: loading models, generating, executing generated code, the CLI."""
