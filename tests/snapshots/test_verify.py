"""verify_snapshot: damage is named by file and line; wallets that differ from their
ledger are findings, not damage."""

import gzip
import json

import pytest
from django.core.management import CommandError, call_command

from revassure.firestore import MISSING
from snapshots import services
from tests.helpers import put_wallets

pytestmark = pytest.mark.django_db
WALLETS = "wallets-000001.jsonl.gz"


@pytest.fixture
def snap(gateway, tmp_path):
    """A snapshot of ten wallets of two entries each, one drifting and one malformed."""
    wallets = {f"u{n}": (n + 1, [n, 1]) for n in range(10)}
    wallets["u3"] = (10, [3, 1])  # drift: 10 against 4
    wallets["u5"] = (6, [5, "1"])  # a string amount
    put_wallets(gateway, wallets)
    services.take(tmp_path / "snap", actor=None, gateway=gateway)
    return tmp_path / "snap"


def lines_of(path):
    with gzip.open(path) as file:
        return file.read().split(b"\n")[:-1]


def rewrite(path, lines):
    """The file's lines compressed again, as someone editing it would."""
    with gzip.open(path, "wb") as file:
        file.write(b"".join(line + b"\n" for line in lines))


def verify_fails(path, capsys) -> list[str]:
    with pytest.raises(CommandError) as failed:
        call_command("verify_snapshot", str(path), "--json")
    assert failed.value.returncode == 2
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False
    return result["errors"]


def test_an_intact_snapshot_verifies_and_lists_its_violations(snap, capsys):
    call_command("verify_snapshot", str(snap), "--json")
    result = json.loads(capsys.readouterr().out)

    assert set(result) == {"ok", "wallets", "entries", "violations", "errors"}
    assert (result["ok"], result["wallets"], result["entries"], result["errors"]) == (True, 10, 20, [])
    assert result["violations"] == [
        {"uid": "u3", "wallet_points": 10, "ledger_sum": 4, "delta": 6},
        {"uid": "u5", "wallet_points": 6, "ledger_sum": 5, "delta": None},
    ]


def test_the_text_output_says_why_a_wallet_is_a_violation(snap, capsys):
    call_command("verify_snapshot", str(snap))
    out = capsys.readouterr().out

    assert "intact" in out and "NOT" not in out
    assert "u3: points 10 but the ledger sums to 4 (+6)" in out
    assert "u5: entry e001 has a string '1' amount" in out


def test_a_changed_byte_inside_a_line_is_named_by_file_and_line(snap, capsys):
    lines = lines_of(snap / WALLETS)
    lines[4] = lines[4].replace(b'"int":"', b'"int":"9', 1)
    rewrite(snap / WALLETS, lines)

    assert verify_fails(snap, capsys) == [f"{WALLETS} line 5: changed"]


def test_a_changed_byte_in_the_compressed_data_is_named_by_file_and_line(snap, capsys):
    data = bytearray((snap / WALLETS).read_bytes())
    data[len(data) // 2] ^= 0x5A
    (snap / WALLETS).write_bytes(bytes(data))

    errors = verify_fails(snap, capsys)
    assert errors and all(error.startswith(f"{WALLETS} ") for error in errors), errors
    assert "line " in errors[0], errors


def test_a_missing_line_is_named(snap, capsys):
    lines = lines_of(snap / WALLETS)
    del lines[6]
    rewrite(snap / WALLETS, lines)

    assert verify_fails(snap, capsys) == [
        f"{WALLETS} line 7: missing (the manifest's next line follows line 6)"
    ]


def test_an_added_line_is_named(snap, capsys):
    lines = lines_of(snap / WALLETS)
    lines.insert(3, lines[2])  # a wallet's ledger entry, twice
    rewrite(snap / WALLETS, lines)

    assert verify_fails(snap, capsys) == [f"{WALLETS} line 4: added (not in the manifest)"]


def test_lines_cut_off_or_added_at_the_end_are_named(snap, capsys):
    lines = lines_of(snap / WALLETS)
    rewrite(snap / WALLETS, lines[:-2])
    assert verify_fails(snap, capsys) == [
        f"{WALLETS} line 29: missing (and 1 more): the file ends after line 28"
    ]

    rewrite(snap / WALLETS, [*lines, lines[0]])
    assert verify_fails(snap, capsys) == [f"{WALLETS} line 31: added after the manifest's last line"]


def test_an_absent_file_is_named(snap, capsys):
    (snap / "config.jsonl.gz").unlink()

    assert verify_fails(snap, capsys) == ["config.jsonl.gz: absent (the manifest lists it with 0 lines)"]


def test_a_file_cut_short_is_named_at_the_line_it_breaks(snap, capsys):
    data = (snap / WALLETS).read_bytes()
    (snap / WALLETS).write_bytes(data[: len(data) - 40])

    errors = verify_fails(snap, capsys)
    assert errors[0].startswith(f"{WALLETS} line "), errors
    assert "cut short" in errors[0] or "damaged" in errors[0], errors


def test_a_file_not_in_the_manifest_and_a_missing_manifest_are_caught(snap, capsys):
    (snap / "wallets-000009.jsonl.gz").write_bytes(gzip.compress(b"{}\n"))
    assert verify_fails(snap, capsys) == [
        "wallets-000009.jsonl.gz: not in the manifest (a file added to the snapshot)"
    ]

    (snap / "wallets-000009.jsonl.gz").unlink()
    (snap / "manifest.json").unlink()
    assert verify_fails(snap, capsys) == [
        "manifest.json: absent (the snapshot never finished, or this is not a snapshot)"
    ]


def test_a_changed_manifest_is_caught_against_the_recorded_sha256(snap, capsys):
    recorded = services.verify(snap).manifest_sha256
    manifest = json.loads((snap / "manifest.json").read_text())
    manifest["points_total"] += 1
    (snap / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(CommandError):
        call_command("verify_snapshot", str(snap), "--json", "--manifest-sha256", recorded)
    errors = json.loads(capsys.readouterr().out)["errors"]
    assert errors[0].startswith("manifest.json: changed since the snapshot was taken")


def test_a_changed_index_is_caught(snap, capsys):
    index = snap / "wallets-000001.lines"
    digests = index.read_text().splitlines()
    digests[2] = "0" * 16
    index.write_text("\n".join(digests) + "\n")

    errors = verify_fails(snap, capsys)
    assert "wallets-000001.lines: changed (its SHA-256 is not the manifest's)" in errors


def test_a_snapshot_of_an_empty_project_verifies(firestore_project, gateway, tmp_path):
    put_wallets(gateway, {})
    services.take(tmp_path / "empty", actor=None, gateway=gateway)
    result = services.verify(tmp_path / "empty")
    assert (result.ok, result.wallets, result.entries, result.violations) == (True, 0, 0, [])


def test_a_wallet_without_points_is_a_violation(gateway, tmp_path):
    put_wallets(gateway, {"u1": (MISSING, [3])})
    services.take(tmp_path / "snap", actor=None, gateway=gateway)

    (violation,) = services.verify(tmp_path / "snap").violations
    assert (violation.uid, violation.wallet_points, violation.ledger_sum, violation.delta) == (
        "u1",
        None,
        3,
        None,
    )
    assert violation.reason == "it has no points"


def manifest_of(path):
    return json.loads((path / "manifest.json").read_text())


def write_manifest(path, manifest):
    path.mkdir(exist_ok=True)
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "name",
    [
        "../snap/wallets-000001.jsonl.gz",
        "/etc/passwd",
        "sub/wallets-000001.jsonl.gz",
        "..",
        "wallets-000001.jsonl.gz/",
        "manifest.json",
    ],
)
def test_a_manifest_naming_a_file_outside_its_snapshot_is_refused(snap, capsys, name):
    """Issue 27 item 10: only plain data file names inside the snapshot are read."""
    elsewhere = snap.parent / "elsewhere"
    manifest = manifest_of(snap)
    manifest["files"][0]["name"] = name
    write_manifest(elsewhere, manifest)

    errors = verify_fails(elsewhere, capsys)

    assert errors[0].startswith(f"manifest.json: files[0] name {name!r} is not ")
    assert len(errors) == 1


def test_a_manifest_borrowing_another_snapshots_files_does_not_verify(snap, capsys):
    elsewhere = snap.parent / "elsewhere"
    manifest = manifest_of(snap)
    for entry in manifest["files"]:
        entry["name"] = f"../snap/{entry['name']}"
    write_manifest(elsewhere, manifest)

    errors = verify_fails(elsewhere, capsys)

    assert len(errors) == len(manifest["files"])
    assert all("is not a plain file name inside the snapshot" in error for error in errors)


def test_a_data_file_that_is_a_symbolic_link_is_refused(snap, capsys):
    outside = snap.parent / "outside.jsonl.gz"
    (snap / WALLETS).rename(outside)
    (snap / WALLETS).symlink_to(outside)

    assert f"{WALLETS}: a symbolic link, not a file of the snapshot" in verify_fails(snap, capsys)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda m: m.pop("files"), 'manifest.json: no "files" (the list of data files)'),
        (lambda m: m.update(files="x"), "manifest.json: \"files\" is text ('x'), not a list of files"),
        (
            lambda m: m["files"].__setitem__(0, WALLETS),
            f"manifest.json: files[0] is text ({WALLETS!r}), not an object with a name and SHA-256",
        ),
        (lambda m: m["files"][0].pop("sha256"), 'manifest.json: files[0] has no "sha256"'),
        (lambda m: m["files"][1].pop("name"), 'manifest.json: files[1] has no "name"'),
        (
            lambda m: m["files"][0].update(lines="7"),
            "manifest.json: files[0] \"lines\" is text ('7'), not a count",
        ),
        (
            lambda m: m["files"].append(dict(m["files"][0])),
            f"manifest.json: files[{{last}}] name {WALLETS!r} is listed twice",
        ),
    ],
    ids=["no-files", "files-text", "entry-text", "no-sha256", "no-name", "lines-text", "listed-twice"],
)
def test_a_malformed_manifest_is_named_not_a_crash(snap, capsys, change, error):
    """Issue 27 item 11: exit 2 naming the problem, never a traceback."""
    manifest = manifest_of(snap)
    change(manifest)
    write_manifest(snap, manifest)
    files = manifest.get("files")
    last = len(files) - 1 if isinstance(files, list) else None

    assert verify_fails(snap, capsys) == [error.format(last=last)]
