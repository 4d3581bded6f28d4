"""Journey: a cutover's freeze and its long steps (issue 25). Ops start a
cutover and confirm its freeze; while the cutover holds it, the dashboard says
so and offers no unfreeze, and the freeze page refuses one with the reason.
The snapshot step runs in the workers: the page shows it waiting for a worker,
refreshes itself, and shows the step recorded once the worker has taken the
snapshot. Aborting the cutover with "Unfreeze" lifts the freeze."""

import re

from playwright.sync_api import expect

NAME = "points v2 go-live"


def test_a_cutover_holds_its_freeze_and_its_snapshot_runs_in_the_workers(people, site):
    ops = people.sign_in("otto")
    ops.goto("/admin/cutover/cutover/")
    ops.locator("#start-cutover").click()
    ops.get_by_label("Name").fill(NAME)
    ops.get_by_role("button", name="Start the cutover").click()
    expect(ops.get_by_text(f"{NAME}").first).to_be_visible()
    cutover_url = ops.url
    assert re.search(r"/admin/cutover/cutover/\d+/change/$", cutover_url), cutover_url
    ops.get_by_role("button", name="Confirm step 1").click()
    expect(ops.locator("#step-freeze .step-state")).to_have_text("Done")
    people.fits_the_screen(ops)

    # The freeze is the cutover's: the dashboard says who lifts it, with no button to be refused.
    ops.get_by_role("link", name="revassure", exact=True).click()
    panel = ops.get_by_role("region", name="Freeze of manual balance changes")
    expect(panel).to_contain_text("Frozen")
    expect(panel.locator("#freeze-held")).to_contain_text(f"cutover {NAME}")
    expect(panel.locator("#freeze-held")).to_contain_text("lifted by the cutover's last step (unfreeze)")
    expect(panel.get_by_role("button", name="Unfreeze manual changes")).to_have_count(0)
    # The freeze's own page refuses to lift it, and says why.
    ops.goto("/admin/revassure/freezeevent/toggle/")
    ops.get_by_label("Reason").fill("A goodwill adjustment cannot wait.")
    ops.get_by_role("button", name="Unfreeze").click()
    expect(ops.locator(".errornote, .errorlist").first).to_contain_text(f"cutover {NAME} (started by otto at")
    expect(ops.get_by_role("alert").filter(has_text="FROZEN")).to_be_visible()

    # Step 2 in the workers: asked while they are busy, it waits on the page, which refreshes itself.
    ops.goto(cutover_url)
    with site.workers_paused():
        ops.get_by_role("button", name="Confirm step 2").click()
        expect(ops.get_by_text("Step 2. Snapshot started in the workers")).to_be_visible()
        progress = ops.locator("#step-progress")
        expect(progress).to_contain_text("Step 2: Snapshot is running in the workers")
        expect(progress).to_contain_text(
            re.compile(r"Snapshot \d+: pending, waiting for a worker to take it\.")
        )
        expect(ops.locator("#step-snapshot .step-state")).to_have_text("Running in the workers")
        expect(ops.locator("#step-form")).to_have_count(0)  # nothing to confirm while it runs
        people.fits_the_screen(ops)
        people.screenshot(ops, "-running")
    # The worker takes it; the page, refreshing itself, shows the step recorded with its evidence.
    snapshot = ops.locator("#step-snapshot")
    expect(snapshot.locator(".step-state")).to_have_text("Done", timeout=60_000)
    expect(snapshot).to_contain_text("intact")
    expect(snapshot).to_contain_text("otto")
    expect(ops.locator("#step-progress")).to_have_count(0)
    expect(ops.get_by_role("button", name="Confirm step 3")).to_be_visible()

    # Aborted, with the freeze lifted: manual changes are accepted again.
    ops.locator("#abort-cutover").click()
    ops.get_by_label("Reason").fill("Rehearsal only: the go-live is next week.")
    ops.get_by_label("Unfreeze").check()
    ops.get_by_role("button", name="Abort the cutover").click()
    expect(ops.locator(".messagelist")).to_contain_text(f"Cutover {NAME} to production aborted")
    expect(ops.locator("#rolled-back")).to_contain_text("manual balance changes unfrozen")
    expect(ops.get_by_role("alert").filter(has_text="FROZEN")).to_have_count(0)
    people.screenshot(ops)
