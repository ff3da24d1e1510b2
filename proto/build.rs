//! Generates the gRPC code from `proto/` at build time with a vendored `protoc`,
//! so building needs no system protobuf compiler.

/// Messages whose `Debug` must not print their secrets.
const REDACTED: [&str; 10] = [
    "switchboard.v1.IssueTokenRequest",
    "switchboard.v1.IssueTokenResponse",
    "switchboard.v1.RegisterApiClientResponse",
    // Agent enrolment (agent.proto, auth.proto).
    "switchboard.v1.RegisterAgentRequest",
    "switchboard.v1.RegisterAgentResponse",
    "switchboard.v1.GenerateSoftwareStatementResponse",
    "switchboard.v1.DeactivateSoftwareStatementRequest",
    // The private key of a signing key (records.proto).
    "switchboard.v1.SigningKeyRecord",
    // A webhook's signing secret (records.proto, store.proto).
    "switchboard.v1.WebhookRecord",
    "switchboard.v1.RegisterWebhookResponse",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let files = [
        "proto/switchboard/v1/types.proto",
        "proto/switchboard/v1/records.proto",
        "proto/switchboard/v1/agent.proto",
        "proto/switchboard/v1/store.proto",
        "proto/switchboard/v1/placement.proto",
        "proto/switchboard/v1/auth.proto",
    ];
    // `build_transport(false)`: the agent link has an rpc named `Connect`, which would clash with
    // the generated `Client::connect` constructor; clients are built with `Client::new(channel)`.
    tonic_prost_build::configure()
        .build_transport(false)
        // Messages carrying secrets get hand-written, redacting `Debug` impls (src/lib.rs).
        .skip_debug(REDACTED)
        .compile_protos(&files, &["proto"])?;
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    Ok(())
}
