//! Inventory files: a JSON array of assets, as `scanfleet discover` writes them
//! and `scanfleet scan --inventory` reads them. Only `private_ip` is required.

use std::path::{Path, PathBuf};

use crate::types::Asset;

/// Why an inventory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("inventory {path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("inventory {path}: {detail}")]
    Malformed { path: PathBuf, detail: String },
}

/// Parse inventory JSON. Assets without an `id` get their IP as id.
///
/// # Errors
/// [`InventoryError::Malformed`] naming the path, the JSON position or the entry.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Asset>, InventoryError> {
    let malformed = |detail: String| InventoryError::Malformed {
        path: path.to_path_buf(),
        detail,
    };
    let raw: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        malformed(format!(
            "not valid JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        ))
    })?;
    let serde_json::Value::Array(items) = raw else {
        return Err(malformed("expected a JSON array of assets".into()));
    };
    let mut assets = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let mut a: Asset =
            serde_json::from_value(item).map_err(|e| malformed(format!("asset #{i}: {e}")))?;
        if a.id.is_empty() {
            a.id = a.private_ip.to_string();
        }
        assets.push(a);
    }
    if assets.is_empty() {
        return Err(malformed("holds no assets".into()));
    }
    Ok(assets)
}

/// Read and parse an inventory file.
///
/// # Errors
/// [`InventoryError`] naming the path and what is wrong.
pub fn load(path: &Path) -> Result<Vec<Asset>, InventoryError> {
    let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_minimal_and_full_assets() {
        let text = r#"[{"private_ip":"10.0.0.1"},
            {"id":"i-1","private_ip":"10.0.0.2","instance_type":"m5.large","account_id":"1","region":"eu-west-1","vpc_id":"vpc-1","tags":{"env":"prod"}}]"#;
        let a = parse(Path::new("inv.json"), text).unwrap();
        assert_eq!(a[0].id, "10.0.0.1");
        assert_eq!(a[1].tags["env"], "prod");
    }

    #[test]
    fn errors_name_the_file_and_entry() {
        let p = Path::new("inv.json");
        let e = parse(p, "{").unwrap_err().to_string();
        assert!(
            e.starts_with("inventory inv.json: not valid JSON at line 1"),
            "{e}"
        );
        let e = parse(p, r#"{"private_ip":"10.0.0.1"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a JSON array"), "{e}");
        let e = parse(p, r#"[{"private_ip":"10.0.0.1"},{"id":"x"}]"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("asset #1") && e.contains("private_ip"), "{e}");
        let e = parse(p, r#"[{"private_ip":"10.0.0.999"}]"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("asset #0"), "{e}");
        assert!(
            parse(p, "[]")
                .unwrap_err()
                .to_string()
                .contains("no assets")
        );
        let e = load(Path::new("/nonexistent/inv.json"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/nonexistent/inv.json") && e.contains("cannot read"),
            "{e}"
        );
    }
}
