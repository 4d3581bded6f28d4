"""Tooling for development, tests, the bench and the demo: never imported by the
product itself, and left out of the production image (.dockerignore).

- emulator.py: the Firestore emulators (our npm launcher and Google's) started
  on a free port, their readiness, CPU and shutdown.
"""
