//! Property-based fuzzing of everything that parses input an attacker or a careless config
//! can control: the config parser, the address parser, the token-response parser, the
//! token's claims (`inspect`, and placing a token in time by its `exp`) and the message
//! builder. Properties: no panic, every call returns within a bounded time, errors
//! have the right code and name their field, no secret appears in any error or `Debug`
//! output, and messages that build carry no injected header and no header line longer than
//! RFC 5322's 998 bytes.
//!
//! `cargo test` runs each target with 64 cases (`PROPTEST_CASES` overrides it). With
//! `FUZZ_SECONDS=n` a target runs until it has done `PROPTEST_CASES` cases or `n` seconds
//! have passed, whichever comes first, and prints how many executions it ran (see
//! `scripts/fuzz.sh`, `npm run fuzz`). `FUZZ_SHOW_ERRORS=1` prints why each generated
//! message was refused (to check that the generators still reach the header checks).
//!
//! The last section checks, without randomness, that `Debug` output and panic messages of a
//! parsed config never show its secrets.

mod harness;
mod secrets;
mod strategies;
mod targets;
