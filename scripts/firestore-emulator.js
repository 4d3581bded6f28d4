// Starts the in-memory Firestore emulator (@firestore-emulator/server) on
// <host>:<port> (`node firestore-emulator.js PORT [HOST]`, the host 127.0.0.1
// by default) and serves until the process ends. Prints "ready <port>" once it
// listens, so callers can wait for that line instead of sleeping. The package
// itself listens on every interface (0.0.0.0): the launcher binds the one
// address it is given, so a development emulator is not served to the network.
//
// The package keeps no transaction isolation and applies commits write by
// write, so on its own it cannot tell whether our concurrency guarantees hold.
// Below, the launcher wraps five of its gRPC handlers to keep the promises
// Firestore makes to server SDKs (pessimistic locking) and our code relies on,
// and answers ListDocuments, which the package leaves unimplemented:
//
// - BeginTransaction returns a real, unique transaction id;
// - what a read-write transaction reads is locked until it commits or rolls
//   back: a document it gets, and for a query (RunQuery,
//   RunAggregationQuery) the whole queried collection (coarser than
//   Firestore, which locks the ranges the query scanned; never weaker);
// - a commit that would write a locked document waits for the lock. Waiting
//   follows wound-wait, so two transactions never wait on each other: an
//   older transaction (by its first attempt, which a retry keeps) aborts a
//   younger one holding the lock it needs, a younger one waits. A commit that
//   still has no lock after FIRESTORE_EMULATOR_LOCK_TIMEOUT_MS (5000) fails
//   with ABORTED, which google-cloud-firestore's @transactional retries. A
//   transaction idle for FIRESTORE_EMULATOR_TRANSACTION_IDLE_MS (60000, as
//   Firestore) ends and releases its locks; committing it afterwards, or
//   again, fails with INVALID_ARGUMENT, as in Firestore;
// - every write's `exists` and `update_time` preconditions are enforced
//   (NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, as Firestore answers);
// - a commit is all or nothing;
// - commit times strictly increase, so a document's update time changes with
//   every write and an update_time precondition tells two writes apart.
//
// - a read-only transaction reads one snapshot: what commits after it began
//   stays unseen by its reads (each write keeps, for the read-only
//   transactions open, the version it replaces; nothing is kept when none is).
//
// - ListDocuments answers a page of a collection in one message, in
//   document-name order, with page tokens and field masks (listDocuments).
// - RunQuery answers collection-group queries (all_descendants), which the
//   package takes for a query of one collection: every collection of the id
//   below the database, with field filters, order, cursors, limit and
//   projection (collectionGroupQuery).
//
// Read-only transactions and reads outside transactions take no locks. A
// transaction that loses under wound-wait can still read (without locks) but
// its commit fails with ABORTED. Transactions begun by a read
// (`new_transaction`) are left as the package has them: our clients call
// BeginTransaction.
// FIRESTORE_EMULATOR_BARE=1 starts the package as it is (only immer's
// auto-freeze stays off: that changes speed, not behaviour), to show what the
// tests catch without the promises.
//
// The patch reads the package's internals, so it is pinned: it refuses to
// start on any other version of the package than the one it was written for.
const PACKAGE = "@firestore-emulator/server";
const PATCHED_VERSION = "0.3.15";

const crypto = require("node:crypto");
const packageDir = require("node:path").dirname(require.resolve(`${PACKAGE}/package.json`));
const fromPackage = (name) => require(require.resolve(name, { paths: [packageDir] }));
const { FirestoreServer } = require(PACKAGE);

// The emulator keeps its state in immer, whose auto-freeze checks the whole
// collection (Object.isFrozen is linear in the number of keys) after every
// produce, reads included: each query then costs time in proportion to the
// number of documents in the collection it passes through (24% of the
// emulator's CPU at 8,000 wallets, and growing). Real Firestore's cost per
// query does not grow with the database, so neither should the stand-in's.
// The emulator changes its state only through produce, so nothing relies on
// the freezing.
fromPackage("immer").setAutoFreeze(false);

const port = Number.parseInt(process.argv[2] || process.env.PORT || "8085", 10);
const host = process.argv[3] || "127.0.0.1";
const bare = process.env.FIRESTORE_EMULATOR_BARE === "1";

// The package's start() binds 0.0.0.0:<port>; bind <host>:<port> in its place.
function startOn(server) {
  const grpc = fromPackage("@grpc/grpc-js");
  const bindAsync = grpc.Server.prototype.bindAsync;
  const address = `${host.includes(":") ? `[${host}]` : host}:${port}`;
  grpc.Server.prototype.bindAsync = function (requested, ...rest) {
    return bindAsync.call(this, requested === `0.0.0.0:${port}` ? address : requested, ...rest);
  };
  return server.start(port).finally(() => {
    grpc.Server.prototype.bindAsync = bindAsync;
  });
}

function keepFirestorePromises() {
  const version = require(`${PACKAGE}/package.json`).version;
  if (version !== PATCHED_VERSION) {
    console.error(
      `scripts/firestore-emulator.js patches ${PACKAGE} ${PATCHED_VERSION}, but ${version} is installed: ` +
        "run `npm ci`, or check the patch against the new version and update PATCHED_VERSION " +
        "(FIRESTORE_EMULATOR_BARE=1 starts the package unpatched)",
    );
    process.exit(1);
  }
  const grpc = fromPackage("@grpc/grpc-js");
  const { status } = grpc;
  const protos = fromPackage("@firestore-emulator/proto/dist/google/firestore/v1/firestore");
  const lockTimeoutMs = Number(process.env.FIRESTORE_EMULATOR_LOCK_TIMEOUT_MS || 5000);
  // Firestore ends a transaction left idle for 60 s; so do we, releasing its locks.
  const idleMs = Number(process.env.FIRESTORE_EMULATOR_TRANSACTION_IDLE_MS || 60000);

  let state; // the package's FirestoreState, once the server exists
  let packageLookup; // the package's FirestoreState.getDocument, bound to the state
  let sequence = 0; // transactions begun so far: a lower number is older
  let lastCommitMs = 0;
  const transactions = new Map(); // id (hex) -> open read-write transaction
  const snapshots = new Map(); // id (hex) -> open read-only transaction: {versions, used}
  const attempts = new Map(); // id (hex) -> {age, ended}: for retries, which keep their age
  const holders = new Map(); // document or collection name -> Set of transactions locking it
  const waiting = []; // commits waiting for locks
  let recheckScheduled = false;

  const hex = (bytes) => Buffer.from(bytes).toString("hex");
  const failure = (code, details) => Object.assign(new Error(details), { code, details });
  const contention = () =>
    failure(status.ABORTED, "Aborted due to cross-transaction contention: another transaction holds a lock.");
  const parentOf = (name) => name.slice(0, name.lastIndexOf("/"));
  const older = (a, b) => a.age < b.age || (a.age === b.age && a.sequence < b.sequence);

  function openTransaction(request) {
    const id = crypto.randomBytes(16);
    // Only read-write transactions are tracked; a read-only one needs no state.
    const options = request.has_options ? request.options : null;
    if (options?.has_read_only) {
      // versions: document -> [metadata, fields] as they were when the transaction began
      snapshots.set(hex(id), { versions: new Map(), used: Date.now() });
      return id;
    }
    const retried = options?.has_read_write ? hex(options.read_write.retry_transaction) : "";
    const first = retried && (transactions.get(retried) ?? attempts.get(retried));
    sequence += 1;
    // Age is the first attempt's; among equals (a retry id reused), the earlier begin.
    const age = first ? first.age : sequence;
    const tx = { id: hex(id), age, sequence, locks: new Set(), used: Date.now() };
    transactions.set(tx.id, tx);
    return id;
  }

  // Run a read as of its read-only transaction's start: the documents written
  // since are put back as they were for the (synchronous) read, then restored.
  function asOfSnapshot(request, read) {
    const snapshot = snapshots.size > 0 && request.has_transaction && snapshots.get(hex(request.transaction));
    if (!snapshot) return read();
    snapshot.used = Date.now();
    if (snapshot.versions.size === 0) return read();
    const now = [];
    for (const [document, [metadata, fields]] of snapshot.versions) {
      now.push([document, document.metadata, document.fields]);
      document.metadata = metadata;
      document.fields = fields;
    }
    try {
      return read();
    } finally {
      for (const [document, metadata, fields] of now) {
        document.metadata = metadata;
        document.fields = fields;
      }
    }
  }

  function lockReads(request, names) {
    // Reads outside read-write transactions (most of them) return here.
    if (transactions.size === 0 || !request.has_transaction) return;
    const tx = transactions.get(hex(request.transaction));
    if (!tx) return; // a read-only transaction
    tx.used = Date.now();
    if (tx.wounded) return; // its commit will fail: what it reads now does not matter
    for (const name of names) {
      tx.locks.add(name);
      let set = holders.get(name);
      if (!set) holders.set(name, (set = new Set()));
      set.add(tx);
    }
  }

  function release(tx) {
    for (const name of tx.locks) {
      const set = holders.get(name);
      set.delete(tx);
      if (set.size === 0) holders.delete(name);
    }
    tx.locks.clear();
    if (!recheckScheduled && waiting.length) {
      recheckScheduled = true;
      setImmediate(recheck);
    }
  }

  function end(tx) {
    release(tx);
    transactions.delete(tx.id);
    attempts.set(tx.id, { age: tx.age, ended: Date.now() });
  }

  // Wound-wait: the older transaction takes the lock, the younger one aborts.
  function wound(tx) {
    tx.wounded = true;
    release(tx);
    if (tx.waiter) answer(tx.waiter, contention());
  }

  // Whoever blocks this commit, after wounding the younger transactions among them.
  function blockers(commit) {
    const found = new Set();
    if (holders.size === 0) return found;
    for (const name of commit.names) {
      for (const lockName of [name, parentOf(name)]) {
        for (const holder of holders.get(lockName) ?? []) {
          if (holder !== commit.tx) found.add(holder);
        }
      }
    }
    for (const holder of found) {
      if (commit.tx && older(commit.tx, holder)) {
        wound(holder);
        found.delete(holder);
      }
    }
    return found;
  }

  // A waiting commit that will not apply: the same transaction sent its commit again. The transaction stays open, so a commit sent again can still apply.
  function drop(commit) {
    const index = waiting.indexOf(commit);
    if (index >= 0) waiting.splice(index, 1);
    clearTimeout(commit.timer);
    if (commit.tx?.waiter === commit) commit.tx.waiter = null;
  }

  function answer(commit, error, response) {
    drop(commit);
    if (commit.tx) end(commit.tx);
    commit.callback(error ?? null, response ?? null);
  }

  function tryCommit(commit) {
    if (blockers(commit).size > 0) return false;
    let error = null;
    let response = null;
    try {
      response = applyAll(commit.writes);
    } catch (err) {
      error = failure(err.code ?? status.UNKNOWN, err.message);
    }
    answer(commit, error, response);
    return true;
  }

  function recheck() {
    recheckScheduled = false;
    // Oldest first; commits outside transactions after those of transactions.
    const order = (a, b) => (!a.tx || !b.tx ? !a.tx - !b.tx : older(a.tx, b.tx) ? -1 : 1);
    for (const commit of [...waiting].sort(order)) {
      if (waiting.includes(commit)) tryCommit(commit);
    }
  }

  // All or nothing: documents are immutable values (immer) that each write
  // replaces, so keeping the ones a commit replaces is enough to undo it.
  // Listeners hear of a commit once it applied whole (announce).
  function applyAll(writes) {
    const ms = Math.max(Date.now(), lastCommitMs + (writes.length ? 1 : 0));
    const date = new Date(ms);
    const undo = [];
    // The package's write looks its document up again by path (a walk down the
    // tree): for the length of the commit, its lookup returns the one found here.
    const found = new Map();
    const lookup = (name) => found.get(name) ?? found.set(name, packageLookup(name)).get(name);
    state.getDocument = lookup;
    try {
      const results = writes.map((write) => {
        const document = lookup(documentName(write));
        undo.push([document, document.metadata, document.fields]);
        for (const { versions } of snapshots.values()) {
          if (!versions.has(document)) versions.set(document, [document.metadata, document.fields]);
        }
        checkUpdateTime(write, document);
        return state.writeV1Document(date, write).toObject();
      });
      lastCommitMs = ms;
      announce(writes.map(documentName), ms);
      return protos.CommitResponse.fromObject({ commit_time: timestamp(ms), write_results: results });
    } catch (err) {
      for (const [document, metadata, fields] of undo.reverse()) {
        document.metadata = metadata;
        document.fields = fields;
      }
      throw err;
    } finally {
      state.getDocument = packageLookup;
    }
  }

  function checkUpdateTime(write, document) {
    if (!write.has_current_document || !write.current_document.has_update_time) return;
    const wanted = write.current_document.update_time;
    const stored = document.metadata.hasExist ? document.metadata.updatedAt.getTime() : null;
    const same = stored !== null && Number(wanted.seconds) * 1000 + wanted.nanos / 1e6 === stored;
    if (!same || wanted.nanos % 1e6 !== 0) {
      const micros = stored === null ? 0 : stored * 1000;
      const base = Number(wanted.seconds) * 1e6 + Math.floor(wanted.nanos / 1000);
      throw failure(
        status.FAILED_PRECONDITION,
        `the stored version (${micros}) does not match the required base version (${base})`,
      );
    }
  }

  // Listen (see the header): the open streams, each with its targets.
  const change = protos.TargetChangeTargetChangeType;
  const listens = new Set(); // {call, targets: Map(target id -> {parent, collectionId, allDescendants})}
  const ours = (query) =>
    query.from.length === 1 &&
    query.from[0].collection_id &&
    !query.has_where &&
    !query.has_limit &&
    !query.offset &&
    !query.has_start_at &&
    !query.has_end_at &&
    query.order_by.every((order) => order.field.field_path === "__name__");

  function covers(target, name) {
    if (!name.startsWith(`${target.parent}/`)) return false;
    const path = name.slice(target.parent.length + 1).split("/");
    if (path.length % 2 !== 0 || path.at(-2) !== target.collectionId) return false;
    return target.allDescendants || path.length === 2;
  }

  // The existing documents a target covers, walking down from its parent.
  function coveredDocuments(target) {
    const [, project, , database] = target.parent.split("/");
    const root = target.parent.endsWith("/documents")
      ? state.getProject(project).getDatabase(database)
      : packageLookup(target.parent);
    const found = [];
    const walk = (collections, depth) => {
      for (const [name, collection] of Object.entries(collections)) {
        const wanted = name === target.collectionId;
        for (const document of collection.getAllDocuments()) {
          if (wanted && document.metadata.hasExist) found.push(document);
          if (target.allDescendants) walk(document.collections, depth + 1);
        }
      }
    };
    walk(root.collections, 0);
    return found;
  }

  function listen(original, call) {
    const stream = { call, targets: new Map() };
    const send = (response) => call.write(protos.ListenResponse.fromObject(response));
    call.on("data", (request) => {
      if (request.has_remove_target) {
        stream.targets.delete(request.remove_target);
        return;
      }
      if (!request.has_add_target) return;
      const add = request.add_target;
      const query = add.has_query ? add.query.structured_query : null;
      if (!query || !ours(query)) {
        // The package's Listen, for the one target it can serve per stream.
        return state.v1Listen(request, (value) => call.write(value), (handler) => call.once("end", handler));
      }
      const target = {
        parent: add.query.parent,
        collectionId: query.from[0].collection_id,
        allDescendants: query.from[0].all_descendants,
      };
      const id = add.target_id;
      stream.targets.set(id, target);
      listens.add(stream);
      const readTime = timestamp(Math.max(Date.now(), lastCommitMs));
      send({ target_change: { target_change_type: change.ADD, target_ids: [id] } });
      if (add.resume_token.length > 0 || add.has_read_time) {
        send({ target_change: { target_change_type: change.RESET, target_ids: [id] } });
      }
      for (const document of coveredDocuments(target)) {
        send({ document_change: { document: document.toV1DocumentObject(), target_ids: [id] } });
      }
      send({ target_change: { target_change_type: change.CURRENT, target_ids: [id], read_time: readTime } });
      send({ target_change: { target_change_type: change.NO_CHANGE, target_ids: [], read_time: readTime } });
    });
    const end = () => listens.delete(stream);
    call.on("end", () => {
      end();
      call.end();
    });
    call.on("cancelled", end);
    call.on("error", end);
    call.on("close", end);
  }

  // After a commit: what it wrote, to each target covering it, then one consistent point.
  function announce(names, ms) {
    if (listens.size === 0) return;
    const readTime = timestamp(ms);
    for (const stream of listens) {
      const responses = [];
      for (const [id, target] of stream.targets) {
        for (const name of names) {
          if (!covers(target, name)) continue;
          const document = packageLookup(name);
          responses.push(
            document.metadata.hasExist
              ? { document_change: { document: document.toV1DocumentObject(), target_ids: [id] } }
              : { document_delete: { document: name, removed_target_ids: [id], read_time: readTime } },
          );
        }
      }
      if (responses.length === 0) continue;
      responses.push({ target_change: { target_change_type: change.NO_CHANGE, target_ids: [], read_time: readTime } });
      try {
        for (const response of responses) stream.call.write(protos.ListenResponse.fromObject(response));
      } catch (err) {
        console.error(`firestore-emulator.js: Listen: ${err.message}`);
        listens.delete(stream);
      }
    }
  }

  const documentName = (write) => (write.has_delete ? write.delete : write.update.name);
  const timestamp = (ms) => ({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 });
  const queried = (request, query) => query.from.map((from) => `${request.parent}/${from.collection_id}`);

  // ListDocuments, which the package leaves unimplemented: a page of a
  // collection's documents in one message, as Firestore sends it. In
  // document-name order, at most page_size of them, after the page token
  // (here the last name of the page before), only the top-level fields the
  // mask names (a nested path keeps its whole top-level field); with
  // show_missing, documents that do not exist but have subcollections too, by
  // name alone. A custom order, a read time or no collection id is refused
  // rather than answered wrongly.
  function listDocuments(call, callback) {
    const request = call.request;
    if (request.order_by || request.has_read_time || !request.collection_id) {
      const refused = "firestore-emulator.js: ListDocuments takes a collection_id, and no order_by or read_time";
      return callback(failure(status.UNIMPLEMENTED, refused));
    }
    const collection = `${request.parent}/${request.collection_id}`;
    lockReads(request, [collection]);
    const after = request.page_token ? Buffer.from(request.page_token, "base64").toString() : null;
    const keep = request.has_mask ? new Set(request.mask.field_paths.map((path) => path.split(".")[0])) : null;
    const documents = asOfSnapshot(request, () =>
      state
        .getCollection(collection)
        .getAllDocuments()
        .filter((document) => document.metadata.hasExist || (request.show_missing && document.hasChild()))
        .map((document) => [document.getPath(), document])
        .filter(([name]) => after === null || byName(name, after) > 0)
        .sort(([a], [b]) => byName(a, b))
        .slice(0, request.page_size > 0 ? request.page_size : undefined)
        .map(([name, document]) => {
          if (!document.metadata.hasExist) return { name };
          const object = document.toV1DocumentObject();
          if (keep) object.fields = Object.fromEntries(Object.entries(object.fields).filter(([key]) => keep.has(key)));
          return object;
        }),
    );
    const full = request.page_size > 0 && documents.length === request.page_size;
    const next = full ? Buffer.from(documents.at(-1).name).toString("base64") : "";
    callback(null, protos.ListDocumentsResponse.fromObject({ documents, next_page_token: next }));
  }

  // Collection-group queries, which the package answers as a query of one
  // collection `${parent}/${collection_id}`: here every collection named
  // collection_id at any depth below the database (a query below a document is
  // refused rather than answered wrongly), with what settlement's reads use and
  // no more: field filters (alone or ANDed), order_by with __name__ last (as
  // Firestore adds it), start_at/end_at cursors, offset, limit and projection.
  // Documents lacking an order_by field are left out, as Firestore leaves them.
  // Anything else is refused with UNIMPLEMENTED.
  // Values as {kind, value}, from a document's field (the package's own
  // objects) or from a request (a Value message), compared in Firestore's order
  // of types, then within the type. A range only matches its own type.
  const RANKS = {
    null_value: 0,
    boolean_value: 1,
    integer_value: 2,
    double_value: 2,
    timestamp_value: 3,
    string_value: 4,
    reference_value: 6,
  };
  const fromField = (field) => field && { kind: field.type, value: field.value };
  const fromMessage = (message) => {
    const kind = Object.keys(RANKS).find((name) => message[`has_${name}`]);
    if (!kind) throw failure(status.UNIMPLEMENTED, "firestore-emulator.js: a cursor or filter value of this type");
    const value = message[kind];
    return { kind, value: kind === "timestamp_value" ? { seconds: value.seconds, nanos: value.nanos } : value };
  };
  function compareValues(a, b) {
    const [rankA, rankB] = [RANKS[a.kind], RANKS[b.kind]];
    if (rankA === undefined || rankB === undefined) {
      throw failure(status.UNIMPLEMENTED, `firestore-emulator.js: comparing ${a.kind} with ${b.kind}`);
    }
    if (rankA !== rankB) return rankA - rankB;
    if (a.kind === "timestamp_value") {
      const seconds = Number(a.value.seconds) - Number(b.value.seconds);
      return seconds !== 0 ? seconds : Number(a.value.nanos) - Number(b.value.nanos);
    }
    if (rankA === 2) return Number(a.value) - Number(b.value);
    if (rankA === 4 || rankA === 6) return byName(a.value, b.value);
    return Number(a.value) - Number(b.value); // null (equal), boolean (false first)
  }
  const COMPARE = {
    1: (a, b) => RANKS[a.kind] === RANKS[b.kind] && compareValues(a, b) < 0,
    2: (a, b) => RANKS[a.kind] === RANKS[b.kind] && compareValues(a, b) <= 0,
    3: (a, b) => RANKS[a.kind] === RANKS[b.kind] && compareValues(a, b) > 0,
    4: (a, b) => RANKS[a.kind] === RANKS[b.kind] && compareValues(a, b) >= 0,
    5: (a, b) => RANKS[a.kind] === RANKS[b.kind] && compareValues(a, b) === 0,
    6: (a, b) => !(RANKS[a.kind] === RANKS[b.kind] && compareValues(a, b) === 0),
  };
  const NAME = "__name__";

  function collectionGroupQuery(call) {
    const request = call.request;
    const query = request.structured_query;
    const refuse = (what) => {
      call.emit("error", failure(status.UNIMPLEMENTED, `firestore-emulator.js: collection-group query ${what}`));
    };
    const root = request.parent.match(/^projects\/([^/]+)\/databases\/([^/]+)\/documents$/);
    if (!root) return refuse("below a document");
    const filters = [];
    if (query.has_where) {
      const where = query.where;
      const parts = where.has_composite_filter && where.composite_filter.op === 1 ? where.composite_filter.filters : [where];
      for (const part of parts) {
        if (!part.has_field_filter || !COMPARE[part.field_filter.op]) return refuse("with a filter other than a field comparison");
        filters.push(part.field_filter);
      }
    }
    const orders = query.order_by.map((order) => ({ path: order.field.field_path, descending: order.direction === 2 }));
    if (!orders.some((order) => order.path === NAME)) orders.push({ path: NAME, descending: false });

    const collections = [];
    const walk = (holder) => {
      for (const [id, collection] of Object.entries(holder.collections)) {
        if (id === query.from[0].collection_id) collections.push(collection);
        for (const document of collection.getAllDocuments()) walk(document);
      }
    };
    walk(state.getProject(root[1]).getDatabase(root[2]));
    lockReads(request, collections.map((collection) => collection.getPath()));

    const keyOf = (document) =>
      orders.map(({ path }) =>
        path === NAME ? { kind: "reference_value", value: document.getPath() } : fromField(document.getField(path)),
      );
    const compareKeys = (a, b) => {
      for (let i = 0; i < Math.min(a.length, b.length); i += 1) {
        const order = compareValues(a[i], b[i]);
        if (order !== 0) return orders[i].descending ? -order : order;
      }
      return 0;
    };
    const cursorKey = (cursor) => cursor.values.map(fromMessage);
    const start = query.has_start_at ? [cursorKey(query.start_at), query.start_at.before] : null;
    const end = query.has_end_at ? [cursorKey(query.end_at), query.end_at.before] : null;

    const documents = asOfSnapshot(request, () => {
      let found = collections
        .flatMap((collection) => collection.getAllDocuments())
        .filter((document) => document.metadata.hasExist)
        .filter((document) =>
          filters.every((filter) => {
            const field = fromField(document.getField(filter.field.field_path));
            return field !== undefined && COMPARE[filter.op](field, fromMessage(filter.value));
          }),
        )
        .map((document) => [keyOf(document), document])
        .filter(([key]) => key.every((value) => value !== undefined))
        .sort(([a], [b]) => compareKeys(a, b));
      if (start) {
        const [key, before] = start;
        found = found.filter(([own]) => (before ? compareKeys(own, key) >= 0 : compareKeys(own, key) > 0));
      }
      if (end) {
        const [key, before] = end;
        found = found.filter(([own]) => (before ? compareKeys(own, key) < 0 : compareKeys(own, key) <= 0));
      }
      found = found.slice(query.offset || 0);
      if (query.has_limit) found = found.slice(0, query.limit.value);
      const keep = query.has_select ? new Set(query.select.fields.map((field) => field.field_path.split(".")[0])) : null;
      return found.map(([, document]) => {
        const object = document.toV1DocumentObject();
        if (keep) object.fields = Object.fromEntries(Object.entries(object.fields).filter(([key]) => keep.has(key)));
        return object;
      });
    });
    const readTime = timestamp(Date.now());
    if (documents.length === 0) call.write(protos.RunQueryResponse.fromObject({ done: true, read_time: readTime }));
    documents.forEach((document, i) => {
      call.write(
        protos.RunQueryResponse.fromObject({ document, done: i === documents.length - 1, read_time: readTime }),
      );
    });
    call.end();
  }

  // Names in Firestore's order: by code point (UTF-8 bytes), where JavaScript's
  // < compares UTF-16 units. At the first difference both strings start a code
  // point, or share its high surrogate.
  function byName(a, b) {
    if (a === b) return 0;
    for (let i = 0; ; i += 1) {
      const x = a.codePointAt(i);
      const y = b.codePointAt(i);
      if (x !== y) return x === undefined ? -1 : y === undefined ? 1 : x - y;
    }
  }

  const handlers = {
    Listen(original, call) {
      return listen(original, call);
    },
    ListDocuments(_original, call, callback) {
      return listDocuments(call, callback);
    },
    BeginTransaction(_original, call, callback) {
      const id = openTransaction(call.request);
      callback(null, protos.BeginTransactionResponse.fromObject({ transaction: id }));
    },
    BatchGetDocuments(original, call) {
      lockReads(call.request, call.request.documents);
      return asOfSnapshot(call.request, () => original(call));
    },
    RunQuery(original, call) {
      const query = call.request.has_structured_query ? call.request.structured_query : null;
      if (query?.from[0]?.all_descendants) return collectionGroupQuery(call);
      if (query) lockReads(call.request, queried(call.request, query));
      return asOfSnapshot(call.request, () => original(call));
    },
    RunAggregationQuery(original, call) {
      const query = call.request.structured_aggregation_query?.structured_query;
      if (query) lockReads(call.request, queried(call.request, query));
      return asOfSnapshot(call.request, () => original(call));
    },
    Commit(_original, call, callback) {
      const request = call.request;
      const commit = { writes: request.writes, names: request.writes.map(documentName), callback };
      if (request.transaction.length > 0) {
        commit.tx = transactions.get(hex(request.transaction));
        if (!commit.tx) {
          // A read-only transaction's commit carries no writes: it only ends the snapshot.
          snapshots.delete(hex(request.transaction));
          if (request.writes.length === 0) return callback(null, applyAll([]));
          const expired = "The referenced transaction has expired or is no longer valid.";
          return callback(failure(status.INVALID_ARGUMENT, expired));
        }
        if (commit.tx.wounded) return answer(commit, contention());
        commit.tx.used = Date.now();
        const earlier = commit.tx.waiter;
        if (earlier) {
          // The same transaction's commit sent again: only the latest may apply.
          drop(earlier);
          earlier.callback(contention());
        }
      }
      if (tryCommit(commit)) return;
      waiting.push(commit);
      if (commit.tx) commit.tx.waiter = commit;
      // A client that gives up (deadline, dropped connection) does not withdraw its
      // commit: as on Firestore, it may still apply once the lock is free.
      commit.timer = setTimeout(
        () => answer(commit, failure(status.ABORTED, `Transaction lock timeout (${lockTimeoutMs} ms).`)),
        lockTimeoutMs,
      );
    },
    Rollback(original, call, callback) {
      snapshots.delete(hex(call.request.transaction));
      const tx = transactions.get(hex(call.request.transaction));
      if (tx?.waiter) answer(tx.waiter, contention()); // the client gave up on that commit
      else if (tx) end(tx);
      return original(call, callback);
    },
  };

  // Transactions left idle end, as in Firestore; their ids are forgotten later.
  setInterval(() => {
    const now = Date.now();
    for (const tx of transactions.values()) {
      if (!tx.waiter && now - tx.used > idleMs) {
        tx.wounded = true;
        end(tx);
      }
    }
    for (const [id, snapshot] of snapshots) if (now - snapshot.used > idleMs) snapshots.delete(id);
    for (const [id, attempt] of attempts) if (now - attempt.ended > 10 * idleMs) attempts.delete(id);
  }, Math.min(1000, idleMs / 2)).unref();

  // The server binds its service object's methods when it registers the
  // service: wrap them there.
  const addService = grpc.Server.prototype.addService;
  let wrapped = 0;
  grpc.Server.prototype.addService = function (definition, implementation) {
    for (const [name, handler] of Object.entries(handlers)) {
      const original = implementation[name].bind(implementation);
      implementation[name] = (call, callback) => {
        try {
          return handler(original, call, callback);
        } catch (err) {
          // A fault of ours must answer the call, never leave the client waiting.
          console.error(err);
          const error = failure(status.INTERNAL, `firestore-emulator.js: ${err.message}`);
          return callback ? callback(error) : call.emit("error", error);
        }
      };
      wrapped += 1;
    }
    return addService.call(this, definition, implementation);
  };
  try {
    const server = new FirestoreServer();
    state = server.state;
    packageLookup = state.getDocument.bind(state);
    state.getDocument = packageLookup; // an own property from the start, swapped during commits
    if (wrapped !== Object.keys(handlers).length || !state) throw new Error("the service was not wrapped");
    return server;
  } finally {
    grpc.Server.prototype.addService = addService;
  }
}

startOn(bare ? new FirestoreServer() : keepFirestorePromises())
  .then(() => console.log(`ready ${port}${bare ? " (bare)" : ""}`))
  .catch((err) => {
    console.error(`firestore emulator failed to start on ${host}:${port}: ${err}`);
    process.exit(1);
  });
