"""The monitoring window after a release: sources, the judge, incidents."""
