// Starts the in-memory Firestore emulator (@firestore-emulator/server) on
// 127.0.0.1:<port> and serves until the process ends. Prints "ready <port>"
// once it listens, so callers can wait for that line instead of sleeping.
const { FirestoreServer } = require("@firestore-emulator/server");

const port = Number.parseInt(process.argv[2] || process.env.PORT || "8085", 10);

new FirestoreServer()
  .start(port)
  .then(() => console.log(`ready ${port}`))
  .catch((err) => {
    console.error(`firestore emulator failed to start on ${port}: ${err}`);
    process.exit(1);
  });
