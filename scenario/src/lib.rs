//! `scenario` — the scenario format shared by `meshrig run --mode sim|real` and
//! `meshrig validate`: the model, its parser (with file:line positions), validation,
//! and the assertion evaluator. IO-free: files are read by the caller.
