//! `patchbay`: the server and its admin commands. See `patchbay --help`.

use std::process::ExitCode;

/// mimalloc: faster than the system allocator on the request path, and it hands
/// large short-lived buffers (argon2's 19 MiB, when a legacy API-key hash is
/// verified) back to the OS instead of keeping them in per-thread arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    patchbay::run()
}
