"""firestore.rules, enforced by Google's own Firestore emulator (`--rules`), for every
collection the gateway declares (revassure.firestore.COLLECTIONS).

Requests go through Firestore's REST API as an app's clients would send them:
with a Firebase ID token (the emulator accepts unsigned ones), with none, or
as the service identity (`Bearer owner`, which the emulator lets past the rules
as Google lets service accounts past them). The documents tried are derived
from the declaration, so a new collection is tried as soon as it is declared,
and a collection without a rule of its own fails the first test.

The test starts its own emulator, so it runs in every pass of the suite; it is
skipped, saying why, only where Google's emulator is not installed.
"""

import base64
import datetime as dt
import json
import re
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from backfill.events import PAYMENT, ProviderEvent
from backfill.rules import decide
from devtools.emulator import EmulatorUnavailable, google_available, running_emulator
from revassure.firestore import COLLECTIONS, Access, BalanceChange, FirestoreGateway

# CI's PostgreSQL pass skips it, having run it in the defaults pass: touches Firestore only, never a database.
pytestmark = pytest.mark.same_on_every_database

RULES = Path(__file__).resolve().parents[2] / "firestore.rules"
SERVICE = "owner"  # the emulator's service identity: not subject to rules
ALICE, BOB = "alice", "bob"
OWNED = [c for c in COLLECTIONS if c.access is Access.OWNER_READS]
SERVICE_ONLY = [c for c in COLLECTIONS if c.access is Access.SERVICE_ONLY]
by_name = pytest.mark.parametrize("collection", COLLECTIONS, ids=lambda c: c.name)


def documents(collection, uid: str = ALICE) -> list[str]:
    """A document of the collection named by `uid`, and one in each of its subcollections."""
    root = f"{collection.name}/{uid}"
    return [root, *(f"{root}/{sub}/doc-1" for sub in collection.subcollections)]


def every_document(uid: str = ALICE) -> list[str]:
    return [path for collection in COLLECTIONS for path in documents(collection, uid)]


def id_token(uid: str, project: str) -> str:
    """A Firebase ID token for an app user, unsigned (alg none), as the emulator accepts."""

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {
        "sub": uid,
        "user_id": uid,
        "iss": f"https://securetoken.google.com/{project}",
        "aud": project,
        "iat": 1_700_000_000,
        "exp": 4_000_000_000,
        "auth_time": 1_700_000_000,
        "firebase": {"sign_in_provider": "password", "identities": {}},
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


class Rest:
    """Firestore's REST API on the emulator, for one project."""

    def __init__(self, host: str, project: str):
        self.host, self.project = host, project
        self.documents = f"http://{host}/v1/projects/{project}/databases/(default)/documents"

    def call(self, method: str, path: str, *, who: str | None, body: dict | None = None) -> tuple[int, dict]:
        """(HTTP status, JSON answer); `who` is a uid, SERVICE, or None for no credentials."""
        request = urllib.request.Request(
            f"{self.documents}/{path}".replace("/:", ":"),  # ":runQuery" is the documents' own
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        if who is not None:
            token = SERVICE if who == SERVICE else id_token(who, self.project)
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as refused:
            return refused.code, json.loads(refused.read() or b"{}")

    def get(self, path: str, *, who: str | None) -> int:
        return self.call("GET", path, who=who)[0]

    def put(self, path: str, value: int, *, who: str | None) -> int:
        return self.call("PATCH", path, who=who, body={"fields": {"value": {"integerValue": str(value)}}})[0]

    def create(self, path: str, *, who: str | None) -> int:
        parent, doc_id = path.rsplit("/", 1)
        body = {"fields": {"value": {"integerValue": "1"}}}
        return self.call("POST", f"{parent}?documentId={doc_id}", who=who, body=body)[0]

    def delete(self, path: str, *, who: str | None) -> int:
        return self.call("DELETE", path, who=who)[0]

    def value(self, path: str) -> int | None:
        """The document's `value`, read by the service (None when absent)."""
        status, answer = self.call("GET", path, who=SERVICE)
        return int(answer["fields"]["value"]["integerValue"]) if status == 200 else None

    def query_group(self, collection_id: str, *, who: str | None) -> int:
        """A collection-group query over every `collection_id` in the database."""
        query = {"structuredQuery": {"from": [{"collectionId": collection_id, "allDescendants": True}]}}
        return self.call("POST", ":runQuery", who=who, body=query)[0]


@pytest.fixture(scope="module")
def rules_emulator():
    if not google_available():
        pytest.skip(
            "firestore.rules not tested: Google's Firestore emulator (google-cloud-cli-firestore-emulator "
            "with Java 17), the only one that enforces rules, is not installed"
        )
    try:
        with running_emulator(kind="google", rules=RULES) as emulator:
            yield emulator.host
    except EmulatorUnavailable as exc:
        pytest.fail(f"Google's Firestore emulator did not start with {RULES.name}: {exc}")


@pytest.fixture(scope="module")
def rest(rules_emulator):
    """A project holding, written by the service, a document named for alice and one
    for bob in every declared collection and subcollection; `seeded` keeps the
    service's answers."""
    rest = Rest(rules_emulator, f"rules-{uuid.uuid4().hex[:12]}")
    rest.seeded = {
        path: rest.put(path, 100, who=SERVICE) for path in every_document(ALICE) + every_document(BOB)
    }
    return rest


# -- the rules file ---------------------------------------------------------------


def match_blocks(text: str) -> list[str]:
    """The path of every `match` block, relative to the database's documents."""
    text = re.sub(r"//[^\n]*", "", text)
    stack: list[str | None] = []
    found = []
    for token in re.finditer(r"match\s+(\S+)\s*\{|\{|\}", text):
        if token.group(0) == "}":
            stack.pop()
            continue
        stack.append(token.group(1))
        if token.group(1):
            found.append("".join(path for path in stack if path))
    prefix = "/databases/{database}/documents"
    return [path.removeprefix(prefix) for path in found if path.startswith(prefix) and path != prefix]


def test_every_declared_collection_has_a_rule_of_its_own_and_every_rule_a_declared_collection():
    blocks = match_blocks(RULES.read_text())
    segments = [block.strip("/").split("/") for block in blocks]
    declared = {c.name for c in COLLECTIONS}

    for collection in COLLECTIONS:
        own = [s for s in segments if s[0] == collection.name]
        assert own, f"firestore.rules has no match block for {collection.name}"
        for sub in collection.subcollections:
            # A subcollection is covered by a recursive wildcard or by a block of its own.
            covered = any(s[1].endswith("=**}") for s in own if len(s) == 2)
            covered = covered or any(len(s) == 4 and s[2] == sub for s in own)
            assert covered, f"firestore.rules has no rule for {collection.name}/…/{sub}"
    strangers = {s[0] for s in segments} - declared - {"{document=**}"}
    assert not strangers, f"firestore.rules names collections the gateway does not declare: {strangers}"
    assert "/{document=**}" in blocks  # and anything unnamed is closed


def test_the_match_blocks_are_read_as_nested_paths():
    text = """service cloud.firestore { match /databases/{database}/documents {
        match /a/{x} { allow read: if true; match /b/{y} { allow read: if x == y; } }  // match /c/{z} {
        match /{document=**} { allow read, write: if false; } } }"""
    assert match_blocks(text) == ["/a/{x}", "/a/{x}/b/{y}", "/{document=**}"]


# -- through the emulator -----------------------------------------------------------


@by_name
def test_the_service_identity_writes_and_reads_every_collection(rest, collection):
    for path in documents(collection, ALICE) + documents(collection, BOB):
        assert rest.seeded[path] == 200, path
        assert rest.value(path) == 100, path


@pytest.mark.parametrize("collection", OWNED, ids=lambda c: c.name)
def test_an_app_user_reads_their_own_wallet_and_ledger(rest, collection):
    for path in documents(collection, ALICE):
        assert rest.get(path, who=ALICE) == 200, path
    for sub in collection.subcollections:
        status, answer = rest.call("GET", f"{collection.name}/{ALICE}/{sub}", who=ALICE)
        assert status == 200 and [d["name"].rsplit("/", 1)[1] for d in answer["documents"]] == ["doc-1"]
        query = {"structuredQuery": {"from": [{"collectionId": sub}]}}
        status, answer = rest.call("POST", f"{collection.name}/{ALICE}:runQuery", who=ALICE, body=query)
        assert status == 200 and [a["document"]["name"].rsplit("/", 1)[1] for a in answer] == ["doc-1"]


@pytest.mark.parametrize("collection", OWNED, ids=lambda c: c.name)
def test_an_app_user_reads_no_one_elses_wallet_or_ledger(rest, collection):
    for path in documents(collection, BOB):
        assert rest.get(path, who=ALICE) == 403, path
    for sub in collection.subcollections:
        assert rest.get(f"{collection.name}/{BOB}/{sub}", who=ALICE) == 403
        assert rest.query_group(sub, who=ALICE) == 403  # every user's, in one query
    assert rest.get(collection.name, who=ALICE) == 403  # every wallet, listed


@pytest.mark.parametrize("collection", SERVICE_ONLY, ids=lambda c: c.name)
def test_an_app_user_reads_no_service_collection(rest, collection):
    # Even the documents named by the user's own uid.
    for path in documents(collection, ALICE):
        assert rest.get(path, who=ALICE) == 403, path
    assert rest.get(collection.name, who=ALICE) == 403
    for sub in collection.subcollections:
        assert rest.get(f"{collection.name}/{ALICE}/{sub}", who=ALICE) == 403
        assert rest.query_group(sub, who=ALICE) == 403


@by_name
def test_anonymous_reads_nothing(rest, collection):
    for path in documents(collection, ALICE):
        assert rest.get(path, who=None) == 403, path
    assert rest.get(collection.name, who=None) == 403
    for sub in collection.subcollections:
        assert rest.query_group(sub, who=None) == 403


@by_name
@pytest.mark.parametrize("who", [ALICE, None], ids=["app user", "anonymous"])
def test_no_client_writes_a_balance_an_entry_or_a_service_document(rest, collection, who):
    for path in documents(collection, ALICE):
        assert rest.put(path, 1_000_000, who=who) == 403, path  # e.g. a balance of their own
        assert rest.delete(path, who=who) == 403, path
        assert rest.create(f"{path}-new", who=who) == 403, path  # e.g. an entry in their ledger
        assert (rest.value(path), rest.value(f"{path}-new")) == (100, None), path


def unnamed_documents() -> list[str]:
    """Documents in collections no one declared: at the root and below each declared one."""
    return ["unnamed/alice", *(f"{c.name}/{ALICE}/unnamed/doc-1" for c in COLLECTIONS)]


@pytest.mark.parametrize("path", unnamed_documents())
def test_unnamed_collections_are_closed(rest, path):
    assert rest.put(path, 100, who=SERVICE) == 200
    for who in (ALICE, None):
        assert rest.get(path, who=who) == 403
        assert rest.get(path.rsplit("/", 1)[0], who=who) == 403
        assert rest.put(path, 1, who=who) == 403
        assert rest.create(f"{path}-new", who=who) == 403
    assert rest.value(path) == 100


def test_the_gateway_writes_every_declared_collection_with_the_rules_enforced(rules_emulator, monkeypatch):
    project = f"rules-{uuid.uuid4().hex[:12]}"
    with monkeypatch.context() as patch:
        patch.setenv("FIRESTORE_EMULATOR_HOST", rules_emulator)
        gateway = FirestoreGateway(project, retry_deadline=30.0, call_timeout=10.0)
        gateway.connect()  # binds every client to the rules emulator now
    gateway.write_wallets([("u1", 10, {"e1": {"amount": 10, "type": "purchase"}}), ("u2", 0, {})])
    event = ProviderEvent(
        "evt_1", PAYMENT, dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC), "pay_1", "u2", 25
    )
    assert gateway.apply_payments([(event, 1)], decide=decide)[1].status == "applied"
    rebalance = BalanceChange("u1", "rebalance", 0, 10, 10, "rebalance-1", {"type": "rebalance"})
    assert gateway.apply_balance_change(rebalance).status == "applied"
    gateway.put_report("1", {"checksum": "c1"}, [{"uid": "u1", "delta": 2}])
    gateway.put_settlement_report("1", {"checksum": "s1"}, [("7", {"outcome": "missing_in_ledger"})])
    gateway.put_migration("1", {"status": "completed"})
    gateway.put_config("adjustments", {"frozen": False})

    written = {tuple(path.split("/")[0::2]) for path in gateway.snapshot_paths()}
    declared = {(c.name,) for c in COLLECTIONS} | {(c.name, s) for c in COLLECTIONS for s in c.subcollections}
    # The identity shards are never documents, only their entries.
    assert written == declared - {("ledgerIdentities",)}
    assert gateway.get_wallet_points(["u2"])["u2"] == (True, 25)
    assert gateway.identity_owners(["purchase-pay_1"]) == {"purchase-pay_1": "u2"}
