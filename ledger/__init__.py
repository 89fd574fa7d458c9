"""The write side of CAP Ledger: events, the two chains, the LMDB log, keys, blobs, sandbox."""
