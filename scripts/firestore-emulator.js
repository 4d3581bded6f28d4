// Starts the in-memory Firestore emulator (@firestore-emulator/server) on
// 127.0.0.1:<port> and serves until the process ends. Prints "ready <port>"
// once it listens, so callers can wait for that line instead of sleeping.
const { FirestoreServer } = require("@firestore-emulator/server");

// The emulator keeps its state in immer, whose auto-freeze checks the whole
// collection (Object.isFrozen is linear in the number of keys) after every
// produce, reads included: each query then costs time in proportion to the
// number of documents in the collection it passes through (24% of the
// emulator's CPU at 8,000 wallets, and growing). Real Firestore's cost per
// query does not grow with the database, so neither should the stand-in's.
// The emulator changes its state only through produce, so nothing relies on
// the freezing.
const immer = require(require.resolve("immer", { paths: [require.resolve("@firestore-emulator/server")] }));
immer.setAutoFreeze(false);

const port = Number.parseInt(process.argv[2] || process.env.PORT || "8085", 10);

new FirestoreServer()
  .start(port)
  .then(() => console.log(`ready ${port}`))
  .catch((err) => {
    console.error(`firestore emulator failed to start on ${port}: ${err}`);
    process.exit(1);
  });
