"""The staff roles, as Django groups."""

REVIEWER = "finance-reviewer"
APPROVER = "finance-approver"
OPS = "ops"

# Every role, in the order pages list them. What each may do is declared by
# each app (its AppConfig's `grants`) and synced after migrate (revassure.grants).
ROLES = (REVIEWER, APPROVER, OPS)
