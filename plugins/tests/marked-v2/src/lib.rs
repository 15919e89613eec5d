//! `marked-v2`: version 2 of the hot-swap tests' step plugin (`marked-v1` holds the
//! code both versions share, in `marked.rs`). Each call answers `{"<step>": "v2"}` for
//! `execute` and `{"<step>_undone": "v2"}` for `compensate`; with `report = "true"` in its
//! config it first posts the same to the `marks` service, which may hold its answer to keep
//! the run in that step; a step named in the context's `fail` fails for good, so that
//! the steps before it are compensated.

/// This version's mark.
const MARK: &str = "v2";

include!("../../marked-v1/src/marked.rs");
