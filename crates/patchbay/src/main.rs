//! `patchbay`: the server and its admin commands. See `patchbay --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    patchbay::run()
}
