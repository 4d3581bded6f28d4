"""Journey 3: ops replay an export of provider events: a dry run first, its
plan read line by line with reasons, approved by a second person (the planner
cannot; the plan waits in the approver's inbox, with an email), then the real
run bound to that plan, watched to the end. Unticking "Dry run" is refused
above BACKFILL_PLAN_APPROVAL_ABOVE, saying how to get a plan approved."""

import re

from playwright.sync_api import expect

from tests.helpers import event_line

# Wallets cust-replay-0004 and cust-replay-0005 start empty.
EXPORT = "\n".join(
    [
        event_line("evt_p1", user="cust-replay-0004", payment="pay_e2e_1", points=300),
        event_line("evt_p1", user="cust-replay-0004", payment="pay_e2e_1", points=300),  # resent
        event_line("evt_p2", user="cust-replay-0005", payment="pay_e2e_2", points=120),
        event_line(
            "evt_r2",
            "payment.refunded",
            user="cust-replay-0005",
            payment="pay_e2e_2",
            points=50,
            refund_id="re_e2e_2",
        ),
        event_line(
            "evt_c1",
            "payment.chargeback",
            user="cust-replay-0004",
            payment="pay_e2e_1",
            points=900,
            chargeback_id="cb_e2e_1",
        ),  # more than the payment
        event_line(
            "evt_r9",
            "payment.refunded",
            user="cust-replay-0005",
            payment="pay_e2e_9",
            points=10,
            refund_id="re_e2e_9",
        ),  # its payment has not arrived
        event_line("evt_g1", user="ghost-0009", payment="pay_e2e_3", points=10),  # no such wallet
        "{not json",
    ]
)


def outcome_of(page, text):
    """The row of the line-by-line table that mentions `text`."""
    return page.locator("#migration-items-table tbody tr").filter(has_text=text)


def wallet_balance(page, uid):
    lookup = page.get_by_role("search", name="Wallet lookup")
    lookup.get_by_role("searchbox").fill(uid)
    lookup.get_by_role("button", name="Go").click()
    return page.locator("#wallet-balance")


def test_ops_plan_a_replay_a_second_person_approves_it_and_it_runs_for_real_bound_to_the_plan(people):
    ops = people.sign_in("otto")
    ops.get_by_role("link", name="Data migrations").click()
    people.fits_the_screen(ops)
    ops.get_by_role("link", name="Replay an export").click()
    ops.get_by_label("Export file").set_input_files(
        files=[{"name": "paynow-export.jsonl", "mimeType": "application/x-ndjson", "buffer": EXPORT.encode()}]
    )
    expect(ops.get_by_label("Dry run")).to_be_checked()
    # A real run straight away is one person's word: refused, the form says how to get a plan.
    ops.get_by_label("Dry run").uncheck()
    ops.get_by_role("button", name="Start").click()
    expect(ops.locator(".errorlist")).to_contain_text('upload it with "Dry run" ticked')
    ops.get_by_label("Export file").set_input_files(
        files=[{"name": "paynow-export.jsonl", "mimeType": "application/x-ndjson", "buffer": EXPORT.encode()}]
    )
    ops.get_by_label("Dry run").check()
    ops.get_by_role("button", name="Start").click()

    # The dry run's page reloads itself until the plan is made.
    heading = ops.get_by_role("heading", name=re.compile(r"Dry run #\d+"))
    expect(heading).to_be_visible()
    plan_id = re.search(r"#(\d+)", heading.inner_text()).group(1)
    expect(ops.locator("#migration-mode")).to_have_text("Dry run: nothing is written")
    expect(ops.locator("#migration-status")).to_have_text("Completed", timeout=60_000)
    expect(ops.get_by_role("heading", name="The plan, line by line")).to_be_visible()
    first, resent = outcome_of(ops, "evt_p1").all()
    expect(first).to_contain_text("Would apply")
    expect(first).to_contain_text("+300")
    expect(resent).to_contain_text("Duplicate")
    expect(outcome_of(ops, "evt_r2")).to_contain_text("Would apply")
    chargeback = outcome_of(ops, "evt_c1")
    expect(chargeback).to_contain_text("Would be quarantined")
    expect(chargeback).to_contain_text("reversal of 900 exceeds the 300 points left")
    expect(outcome_of(ops, "evt_r9")).to_contain_text("Would wait (deferred)")
    expect(outcome_of(ops, "evt_r9")).to_contain_text("not in the ledger yet")
    expect(outcome_of(ops, "ghost-0009")).to_contain_text("no wallet")
    expect(ops.locator("#migration-items-table tbody tr").last).to_contain_text("not JSON")
    people.fits_the_screen(ops)
    filters = ops.locator("#migration-items-filter")
    expect(filters).to_contain_text("Would apply (3)")
    expect(filters).to_contain_text("Would be quarantined (3)")

    # Nothing was written: the wallets are still empty.
    checker = people.sign_in("rita")
    expect(wallet_balance(checker, "cust-replay-0004")).to_have_text("0")

    # Four eyes: who planned it cannot approve it, nor run it before a second person has.
    expect(ops.locator("#plan-approval")).to_contain_text("Not approved yet")
    expect(ops.locator("#plan-approval-refusal")).to_contain_text("you planned it")
    expect(ops.get_by_role("button", name="Run for real, bound to this plan")).to_have_count(0)
    expect(ops.locator("#bound-run-refusal")).to_contain_text("a second person, not who planned it")
    # The plan waits in the approver's inbox (and its notice came by email, linking there).
    notice = people.site.mailbox.wait_for(f"Waiting for you: Dry run #{plan_id}")
    assert notice["To"] == "abe@example.com", notice["To"]
    approver = people.sign_in("abe")
    approver.locator("#inbox-link").click()
    waiting = approver.locator(f"#inbox-item-backfill_plan-{plan_id}")
    expect(waiting).to_contain_text(
        f"Dry run #{plan_id}: replay of an export moving 370 points, planned by otto"
    )
    waiting.get_by_role("link", name="Read and approve").click()
    expect(approver.locator("#plan-approval")).to_contain_text("Not approved yet: it moves 370 points")
    approver.get_by_label("Why you approve it").fill("Two payments and a refund, as PayNow's export says.")
    approver.get_by_role("button", name="Approve this plan").click()
    expect(approver.get_by_text(f"Plan {plan_id} approved")).to_be_visible()
    expect(approver.locator("#plan-approval")).to_contain_text("Approved by abe")
    people.fits_the_screen(approver)

    ops.reload()
    ops.get_by_role("button", name="Run for real, bound to this plan").click()
    expect(ops.get_by_text(re.compile(r"Run \d+ queued, bound to plan \d+"))).to_be_visible()
    expect(ops.get_by_role("heading", name=re.compile(r"^Run #\d+"))).to_be_visible()
    expect(ops.locator("#migration-mode")).to_have_text("Real run")
    expect(ops.locator("#migration-status")).to_have_text("Completed", timeout=60_000)
    expect(ops.locator(".field-progress")).to_contain_text("8 of 8")
    people.fits_the_screen(ops)
    outcomes = ops.locator("#migration-outcomes")
    for outcome, count in [
        ("Applied", 3),
        ("Duplicate", 1),
        ("Deferred", 1),
        ("Quarantined", 3),
        ("Total", 8),
    ]:
        expect(outcomes.get_by_role("row").filter(has_text=outcome)).to_contain_text(str(count))
    expect(ops.get_by_role("heading", name="Outcomes, line by line")).to_be_visible()
    expect(outcome_of(ops, "evt_c1")).to_contain_text("exceeds the 300 points left")
    expect(ops.locator(".field-binding")).to_contain_text(f"plan #{plan_id}, checked unchanged")
    expect(ops.locator(".field-approval")).to_contain_text(f"Plan {plan_id}: Approved by abe")

    expect(wallet_balance(checker, "cust-replay-0004")).to_have_text("300")
    expect(wallet_balance(checker, "cust-replay-0005")).to_have_text("70")
    people.screenshot(ops)
