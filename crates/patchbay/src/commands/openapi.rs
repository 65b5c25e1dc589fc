//! `patchbay openapi`: the OpenAPI document the code describes.

use super::CommandError;
use crate::cli::OpenapiArgs;

pub fn run(args: OpenapiArgs) -> Result<(), CommandError> {
    let json = patchbay_api::openapi_json();
    match args.write {
        Some(path) => {
            std::fs::write(&path, json)
                .map_err(|e| CommandError(format!("cannot write {}: {e}", path.display())))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{json}"),
    }
    Ok(())
}
