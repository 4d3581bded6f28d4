"""The sealing kernel: what every sealed report and every history table share.

- `canonical`: the one canonical JSON form (compact, sorted keys, ASCII) a
  checksum is taken over, line by line;
- `models`: `FinishedRecordError`, the abstract `SealedRun` (status, chain
  position, checksum, previous checksum, refusal to change once finished) and
  the `AppendOnly` history mixin;
- `operations`: `RefuseChanges`, the migration operation that writes the
  SQLite and PostgreSQL triggers refusing edits of finished rows and history;
- `chain`: the registry of report kinds and the chain that seals, verifies and
  mirrors any of them (`verify_reports` walks it).

Apps register their report kinds from their AppConfig.ready(): the core never
imports an app.
"""
