"""Deployment model and Jinja templates rendered to chart/, docker/ and bosh/ (issue 8)."""
