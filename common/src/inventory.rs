//! Inventory files: a JSON array of assets, as `scanfleet discover` writes them
//! and `scanfleet scan --inventory` reads them. Only `private_ip` is required;
//! a field that [`Asset`] does not know is an error naming the asset and the field
//! (a typo such as `instance_typ` would otherwise scan a t2.nano as an instance of
//! unknown type). Addresses are read in their canonical form
//! ([`crate::address::canonical`]: `::ffff:10.0.0.1` is 10.0.0.1).

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
        let named = asset_name(&item);
        let mut a: Asset = serde_json::from_value(item)
            .map_err(|e| malformed(format!("asset #{i}{named}: {e}")))?;
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

/// How an error names an entry besides its index: ` (id "i-1")`, or its address.
fn asset_name(item: &serde_json::Value) -> String {
    for key in ["id", "private_ip"] {
        if let Some(v) = item.get(key).and_then(|v| v.as_str())
            && !v.is_empty()
        {
            return format!(" ({key} {})", crate::text::echo(v));
        }
    }
    String::new()
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
    fn unknown_fields_name_the_file_asset_and_field() {
        let p = Path::new("lab/inv.json");
        let text = r#"[{"id":"i-ok","private_ip":"10.0.0.1"},
            {"id":"i-nano","private_ip":"10.0.0.2","instance_typ":"t2.nano"}]"#;
        let e = parse(p, text).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "inventory lab/inv.json: asset #1 (id \"i-nano\"): unknown field `instance_typ`"
            ),
            "{e}"
        );
        let e = parse(p, r#"[{"private_ip":"10.0.0.3","\u001b]0;x":1}]"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("asset #0 (private_ip \"10.0.0.3\")"), "{e}");
    }

    #[test]
    fn what_discover_writes_parses_back() {
        let mut a = Asset::from_ip("10.0.0.9".parse().unwrap());
        a.id = "i-9".into();
        a.private_ips = vec!["10.0.0.9".parse().unwrap(), "10.0.1.9".parse().unwrap()];
        a.public_ips = vec!["54.1.2.3".parse().unwrap()];
        a.instance_type = Some("m5.large".into());
        a.account_id = Some("111111111111".into());
        a.region = Some("eu-west-1".into());
        a.availability_zone = Some("eu-west-1a".into());
        a.vpc_id = Some("vpc-1".into());
        a.subnet_id = Some("subnet-1".into());
        a.state = Some("running".into());
        a.platform = Some("windows".into());
        a.image_id = Some("ami-1".into());
        a.image_name = Some("base".into());
        a.security_groups = vec!["sg-1".into()];
        a.autoscaling_group = Some("web".into());
        a.zone = Some("z1".into());
        a.exposure = Some(crate::types::Exposure {
            paths: Vec::new(),
            notes: vec!["no public IP or Elastic IP".into()],
        });
        a.tags.insert("env".into(), "prod".into());
        let text = serde_json::to_string_pretty(&vec![a.clone()]).unwrap();
        assert_eq!(parse(Path::new("d.json"), &text).unwrap(), vec![a]);
    }

    #[test]
    fn mapped_addresses_are_read_as_ipv4() {
        let text = r#"[{"private_ip":"::ffff:10.0.0.7","private_ips":["::10.0.0.8"],"public_ips":["::ffff:54.1.2.3"]}]"#;
        let a = &parse(Path::new("inv.json"), text).unwrap()[0];
        assert_eq!(a.id, "10.0.0.7");
        assert_eq!(a.private_ip.to_string(), "10.0.0.7");
        assert_eq!(a.private_ips[0].to_string(), "10.0.0.8");
        assert_eq!(a.public_ips[0].to_string(), "54.1.2.3");
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
