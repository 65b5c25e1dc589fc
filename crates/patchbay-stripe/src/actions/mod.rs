//! The typed action catalogue: about sixty named Stripe operations
//! (`stripe.createCustomer`, …) declared as data in `catalog.json`, checked
//! when loaded, validated and encoded per call ([`encode`]) and described as
//! JSON Schema ([`schema`]). The catalogue is checked against Stripe's own
//! OpenAPI document by the black-box suite (`tests/blackbox/test_action_catalog.py`).

pub mod encode;
pub mod model;
pub mod schema;

use std::collections::HashMap;
use std::sync::OnceLock;

pub use encode::{AutoPaginate, FieldError, PreparedCall, prepare};
pub use model::{ActionDef, HttpMethod, Kind, Param, Ty};

/// The catalogue as shipped.
const CATALOG: &str = include_str!("catalog.json");

/// All actions, by name.
#[derive(Debug)]
pub struct Catalog {
    actions: Vec<ActionDef>,
    by_name: HashMap<String, usize>,
}

impl Catalog {
    /// The shipped catalogue (parsed and checked once).
    pub fn builtin() -> &'static Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            Catalog::parse(CATALOG)
                .unwrap_or_else(|e| panic!("the shipped action catalogue is invalid: {e}"))
        })
    }

    /// Parses and checks a catalogue.
    pub fn parse(text: &str) -> Result<Catalog, String> {
        let actions: Vec<ActionDef> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut by_name = HashMap::new();
        for (i, def) in actions.iter().enumerate() {
            check(def)?;
            if by_name.insert(def.name.clone(), i).is_some() {
                return Err(format!("{} is declared twice", def.name));
            }
        }
        Ok(Catalog { actions, by_name })
    }

    /// Every action, in catalogue order.
    pub fn actions(&self) -> &[ActionDef] {
        &self.actions
    }

    /// One action.
    pub fn get(&self, name: &str) -> Option<&ActionDef> {
        self.by_name.get(name).map(|i| &self.actions[*i])
    }

    /// The names nearest to `name` (for "did you mean").
    pub fn suggest(&self, name: &str) -> Vec<String> {
        nearest(name, self.actions.iter().map(|a| a.name.as_str()), 3)
    }
}

/// A catalogue entry's own consistency: a `v1` path whose placeholders are
/// exactly its path params, a permission, examples that validate.
fn check(def: &ActionDef) -> Result<(), String> {
    let name = &def.name;
    if !name.starts_with("stripe.") {
        return Err(format!("{name}: names start with 'stripe.'"));
    }
    if !def.path.starts_with("/v1/") {
        return Err(format!("{name}: path {} is not a /v1/ path", def.path));
    }
    if !def.permission.starts_with("rak_") {
        return Err(format!(
            "{name}: permission {} is not a rak_ permission",
            def.permission
        ));
    }
    for (key, param) in &def.params {
        let placeholder = format!("{{{key}}}");
        if param.in_path() != def.path.contains(&placeholder) {
            return Err(format!(
                "{name}: {key} and the path's placeholders disagree"
            ));
        }
        if param.in_path() && !param.required {
            return Err(format!("{name}: path parameter {key} must be required"));
        }
    }
    let placeholders = def.path.matches('{').count();
    let declared = def.params.values().filter(|p| p.in_path()).count();
    if placeholders != declared {
        return Err(format!(
            "{name}: {placeholders} placeholders but {declared} path parameters"
        ));
    }
    if def.examples.is_empty() {
        return Err(format!("{name}: no example"));
    }
    for (i, example) in def.examples.iter().enumerate() {
        prepare(def, example).map_err(|e| {
            format!(
                "{name}: example {i} is invalid: {} ({})",
                e.message, e.param
            )
        })?;
    }
    Ok(())
}

/// Up to `n` candidates closest to `word` by edit distance (case-insensitive),
/// only those close enough to be a plausible typo.
pub fn nearest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>, n: usize) -> Vec<String> {
    let word = word.to_ascii_lowercase();
    let mut scored: Vec<(usize, &str)> = candidates
        .map(|c| (distance(&word, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(n)
        .map(|(_, c)| c.to_owned())
        .collect()
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
