//! The crate graph points only downhill (ARCHITECTURE.md, "Layers"): proto and common at the
//! bottom, storage above them, the services above storage, the all-in-one binary on top. Each rule
//! is checked on what `cargo tree` resolves, so adding an upward or sideways edge fails here.

use std::collections::BTreeSet;
use std::process::Command;

/// The packages `cargo tree` lists for `package`, with the given edge kinds (`normal,build`, or
/// `all` for dev-dependencies too), the package itself included.
fn tree(package: &str, edges: &str) -> BTreeSet<String> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--manifest-path", manifest, "--locked", "--offline", "--prefix", "none"])
        .args(["--format", "{p}", "-e", edges, "-p", package])
        .output()
        .expect("cargo tree runs");
    assert!(output.status.success(), "cargo tree -p {package}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .expect("cargo tree prints UTF-8")
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Fails naming every package of `forbidden` that `package` reaches.
fn assert_reaches_none(package: &str, edges: &str, forbidden: &[&str]) {
    let reached = tree(package, edges);
    assert!(reached.contains(package), "cargo tree -p {package} listed: {reached:?}");
    let found: Vec<&&str> = forbidden.iter().filter(|name| reached.contains(**name)).collect();
    assert!(found.is_empty(), "{package} must not depend on {found:?} (edges: {edges})");
}

const SERVICES: [&str; 4] =
    ["switchboard-gateway", "switchboard-auth", "switchboard-placement", "switchboard-session-store"];

#[test]
fn the_gateway_links_no_storage_and_no_other_service() {
    // Dev-dependencies included: not even the gateway's tests link storage.
    let mut forbidden = vec!["redb", "redis", "switchboard-store", "switchboard-agent", "switchboard"];
    forbidden.extend(SERVICES.iter().filter(|name| **name != "switchboard-gateway"));
    assert_reaches_none("switchboard-gateway", "all", &forbidden);
}

#[test]
fn auth_placement_and_session_store_share_storage_but_not_each_other() {
    let others = |me: &str| -> Vec<&'static str> {
        SERVICES.iter().copied().filter(|name| *name != me).chain(["switchboard"]).collect()
    };
    assert_reaches_none("switchboard-auth", "all", &others("switchboard-auth"));
    assert_reaches_none("switchboard-session-store", "normal,build", &others("switchboard-session-store"));
    assert_reaches_none("switchboard-placement", "normal,build", &others("switchboard-placement"));
}

#[test]
fn storage_and_the_bottom_layers_import_nothing_above_them() {
    let mut above: Vec<&str> = SERVICES.to_vec();
    above.extend(["switchboard", "switchboard-agent"]);
    assert_reaches_none("switchboard-store", "normal,build", &above);
    let placement_above: Vec<&str> = above.iter().copied().filter(|name| *name != "switchboard-placement").collect();
    // Placement links storage for its one record (the `Idempotency` role), no other service; sessions,
    // servers and the queue it reaches only through session-store's gRPC API.
    assert_reaches_none("switchboard-placement", "normal,build", &placement_above);
    above.push("switchboard-store");
    for bottom in ["switchboard-common", "switchboard-proto"] {
        assert_reaches_none(bottom, "normal,build", &above);
    }
    let agent_above: Vec<&str> = above.iter().copied().filter(|name| *name != "switchboard-agent").collect();
    assert_reaches_none("switchboard-agent", "normal,build", &agent_above);
}

#[test]
fn the_dcvsm_client_reaches_no_switchboard_crate() {
    // dcvsm speaks the public REST API only, so it works against any broker; its tests may start a
    // cluster (dev-dependencies), its binary may not link one.
    let mut forbidden = vec!["switchboard", "switchboard-agent", "switchboard-store", "switchboard-common"];
    forbidden.extend(SERVICES);
    forbidden.extend(["switchboard-proto", "tonic", "prost"]);
    assert_reaches_none("switchboard-dcvsm", "normal,build", &forbidden);
}
