# Webhook events, replay and data migrations arrive with the backfill issue.
