"""The demo: wallets and their histories seeded with known drift, a matching
settlement statement, the demo's logins, and a drift injected on demand.

Installed only when REVASSURE_DEMO is on (by default, when DEBUG is: `make demo`;
the tests turn it on to test these commands), so a production deployment has no
command that writes made-up wallets into Firestore. Left out of the production
image (.dockerignore).
"""
