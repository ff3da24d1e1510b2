//! Per-item validation of CreateSessions specs.
//!
//! Each item is judged on its own: a bad item becomes an `UnsuccessfulList`
//! entry with the message returned here, and never stops the other items.
//! Messages name the API field (PascalCase) so a client can fix its request.
//!
//! `MaxConcurrentClients >= 0` is enforced by the gateway: the spec carries it
//! as an unsigned integer, so a negative value cannot reach placement.

use switchboard_proto::contract::REAP_MAX_SECONDS;
use switchboard_proto::{CreateSessionSpec, SessionType};

use crate::{PlacementConfig, requirements::Requirements};

/// Longest accepted `Owner`, in characters.
pub const OWNER_MAX_CHARS: usize = 256;
/// Longest accepted `Name`, in characters.
pub const NAME_MAX_CHARS: usize = 256;
/// Longest accepted `Requirements` expression, in characters.
pub const REQUIREMENTS_MAX_CHARS: usize = crate::requirements::MAX_CHARS;
/// Longest accepted path (`InitFile`, `AutorunFile`, `StorageRoot`), in characters.
pub const PATH_MAX_CHARS: usize = 1024;
/// Largest accepted (decoded) `PermissionsFile`, in bytes (the contract's bound).
pub use switchboard_proto::contract::PERMISSIONS_FILE_MAX_BYTES as PERMISSIONS_MAX_BYTES;

/// Checks a file path given relative to an agent folder: bounded, no control
/// characters, and no `..` component (it must stay inside that folder).
fn check_relative_path(field: &str, path: &str) -> Result<(), String> {
    if path.chars().count() > PATH_MAX_CHARS {
        return Err(format!("{field} must be at most {PATH_MAX_CHARS} characters"));
    }
    if path.chars().any(char::is_control) {
        return Err(format!("{field} must not contain control characters"));
    }
    if path.split(['/', '\\']).any(|component| component == "..") {
        return Err(format!("{field} must not contain '..': it is relative to the agent's folder"));
    }
    Ok(())
}

/// Checks one spec; `Err` holds the API's `FailureReason`.
pub fn validate_spec(spec: &CreateSessionSpec, config: &PlacementConfig) -> Result<(), String> {
    if spec.owner.trim().is_empty() {
        return Err("Owner is required".into());
    }
    if spec.owner.chars().count() > OWNER_MAX_CHARS {
        return Err(format!("Owner must be at most {OWNER_MAX_CHARS} characters"));
    }
    if spec.owner.chars().any(char::is_control) {
        return Err("Owner must not contain control characters".into());
    }
    if spec.name.chars().count() > NAME_MAX_CHARS {
        return Err(format!("Name must be at most {NAME_MAX_CHARS} characters"));
    }
    let session_type = SessionType::try_from(spec.r#type).unwrap_or(SessionType::Unspecified);
    if session_type == SessionType::Unspecified {
        return Err("Invalid session type: Type must be CONSOLE or VIRTUAL".into());
    }
    if spec.dcv_gl_enabled && session_type != SessionType::Virtual {
        return Err("DcvGlEnabled is supported with VIRTUAL sessions only".into());
    }
    let is_virtual = session_type == SessionType::Virtual;
    if !spec.init_file.is_empty() {
        if !is_virtual {
            return Err("InitFile is supported with VIRTUAL sessions only".into());
        }
        check_relative_path("InitFile", &spec.init_file)?;
    }
    if !spec.autorun_file.is_empty() {
        check_relative_path("AutorunFile", &spec.autorun_file)?;
    }
    if !spec.autorun_file_arguments.is_empty() {
        if spec.autorun_file.is_empty() {
            return Err("AutorunFileArguments requires AutorunFile".into());
        }
        if !is_virtual {
            return Err("AutorunFileArguments is supported with VIRTUAL sessions only".into());
        }
    }
    if spec.storage_root.chars().count() > PATH_MAX_CHARS {
        return Err(format!("StorageRoot must be at most {PATH_MAX_CHARS} characters"));
    }
    if spec.storage_root.chars().any(char::is_control) {
        return Err("StorageRoot must not contain control characters".into());
    }
    if spec.permissions_file.len() > PERMISSIONS_MAX_BYTES {
        return Err(format!("PermissionsFile must be at most {PERMISSIONS_MAX_BYTES} bytes"));
    }
    if std::str::from_utf8(&spec.permissions_file).is_err() {
        return Err("PermissionsFile must be a UTF-8 text file".into());
    }
    if spec.autorun_file_arguments.len() > config.autorun_file_arguments_max_size {
        return Err(format!("AutorunFileArguments must have at most {} items", config.autorun_file_arguments_max_size));
    }
    if let Some(position) = spec
        .autorun_file_arguments
        .iter()
        .position(|arg| arg.chars().count() > config.autorun_file_arguments_max_argument_length)
    {
        return Err(format!(
            "AutorunFileArguments item {position} is longer than {} characters",
            config.autorun_file_arguments_max_argument_length
        ));
    }
    if spec.requirements.chars().count() > REQUIREMENTS_MAX_CHARS {
        return Err(format!("Requirements must be at most {REQUIREMENTS_MAX_CHARS} characters"));
    }
    Requirements::parse(&spec.requirements)?;
    for (field, limit) in [("MaxIdleSeconds", spec.max_idle_seconds), ("MaxLifetimeSeconds", spec.max_lifetime_seconds)]
    {
        if limit.is_some_and(|seconds| seconds > REAP_MAX_SECONDS) {
            return Err(format!("{field} must be between 0 and {REAP_MAX_SECONDS}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> CreateSessionSpec {
        CreateSessionSpec {
            name: "s1".into(),
            owner: "alice".into(),
            r#type: SessionType::Virtual as i32,
            ..Default::default()
        }
    }

    fn check(spec: &CreateSessionSpec) -> Result<(), String> {
        validate_spec(spec, &PlacementConfig::default())
    }

    #[test]
    fn accepts_a_minimal_virtual_spec() {
        assert_eq!(check(&valid()), Ok(()));
    }

    #[test]
    fn owner_is_required_and_bounded() {
        let spec = CreateSessionSpec { owner: "  ".into(), ..valid() };
        assert_eq!(check(&spec).unwrap_err(), "Owner is required");
        let spec = CreateSessionSpec { owner: "a".repeat(257), ..valid() };
        assert_eq!(check(&spec).unwrap_err(), "Owner must be at most 256 characters");
        let spec = CreateSessionSpec { owner: "é".repeat(256), ..valid() };
        assert_eq!(check(&spec), Ok(()), "the limit counts characters, not bytes");
    }

    #[test]
    fn name_is_bounded() {
        let spec = CreateSessionSpec { name: "n".repeat(257), ..valid() };
        assert_eq!(check(&spec).unwrap_err(), "Name must be at most 256 characters");
    }

    #[test]
    fn type_is_required() {
        let spec = CreateSessionSpec { r#type: SessionType::Unspecified as i32, ..valid() };
        assert!(check(&spec).unwrap_err().starts_with("Invalid session type"));
        let spec = CreateSessionSpec { r#type: 42, ..valid() };
        assert!(check(&spec).unwrap_err().starts_with("Invalid session type"));
    }

    #[test]
    fn dcv_gl_needs_a_virtual_session() {
        let spec = CreateSessionSpec { dcv_gl_enabled: true, r#type: SessionType::Console as i32, ..valid() };
        assert_eq!(check(&spec).unwrap_err(), "DcvGlEnabled is supported with VIRTUAL sessions only");
        let spec = CreateSessionSpec { dcv_gl_enabled: true, ..valid() };
        assert_eq!(check(&spec), Ok(()));
    }

    #[test]
    fn autorun_arguments_are_bounded_by_the_config() {
        let valid = || CreateSessionSpec { autorun_file: "app.sh".into(), ..valid() };
        let spec = CreateSessionSpec { autorun_file_arguments: vec!["x".into(); 51], ..valid() };
        assert_eq!(check(&spec).unwrap_err(), "AutorunFileArguments must have at most 50 items");
        let spec = CreateSessionSpec { autorun_file_arguments: vec!["ok".into(), "y".repeat(151)], ..valid() };
        assert_eq!(check(&spec).unwrap_err(), "AutorunFileArguments item 1 is longer than 150 characters");
        let config = PlacementConfig {
            autorun_file_arguments_max_size: 1,
            autorun_file_arguments_max_argument_length: 2,
            ..Default::default()
        };
        let spec = CreateSessionSpec { autorun_file_arguments: vec!["abc".into()], ..valid() };
        assert_eq!(
            validate_spec(&spec, &config).unwrap_err(),
            "AutorunFileArguments item 0 is longer than 2 characters"
        );
    }

    #[test]
    fn reap_limits_are_bounded() {
        let spec =
            CreateSessionSpec { max_idle_seconds: Some(0), max_lifetime_seconds: Some(REAP_MAX_SECONDS), ..valid() };
        assert_eq!(check(&spec), Ok(()));
        let spec = CreateSessionSpec { max_idle_seconds: Some(REAP_MAX_SECONDS + 1), ..valid() };
        assert_eq!(check(&spec).unwrap_err(), "MaxIdleSeconds must be between 0 and 31536000");
        let spec = CreateSessionSpec { max_lifetime_seconds: Some(u32::MAX), ..valid() };
        assert_eq!(check(&spec).unwrap_err(), "MaxLifetimeSeconds must be between 0 and 31536000");
    }

    #[test]
    fn files_and_paths_are_checked_per_field() {
        let spec = CreateSessionSpec { init_file: "init/setup.sh".into(), ..valid() };
        assert_eq!(check(&spec), Ok(()));
        let spec = CreateSessionSpec { init_file: "../etc/shadow".into(), ..valid() };
        assert_eq!(check(&spec).unwrap_err(), "InitFile must not contain '..': it is relative to the agent's folder");
        let spec = CreateSessionSpec { init_file: "a.sh".into(), r#type: SessionType::Console as i32, ..valid() };
        assert_eq!(check(&spec).unwrap_err(), "InitFile is supported with VIRTUAL sessions only");
        let spec = CreateSessionSpec { autorun_file: "x\\..\\y".into(), ..valid() };
        assert!(check(&spec).unwrap_err().starts_with("AutorunFile must not contain '..'"));
        let spec = CreateSessionSpec { autorun_file: "a\nb".into(), ..valid() };
        assert_eq!(check(&spec).unwrap_err(), "AutorunFile must not contain control characters");
        let spec = CreateSessionSpec { autorun_file_arguments: vec!["-v".into()], ..valid() };
        assert_eq!(check(&spec).unwrap_err(), "AutorunFileArguments requires AutorunFile");
        let spec = CreateSessionSpec {
            autorun_file: "app.exe".into(),
            autorun_file_arguments: vec!["-v".into()],
            r#type: SessionType::Console as i32,
            ..valid()
        };
        assert_eq!(check(&spec).unwrap_err(), "AutorunFileArguments is supported with VIRTUAL sessions only");
        let spec = CreateSessionSpec { autorun_file: "app.exe".into(), r#type: SessionType::Console as i32, ..valid() };
        assert_eq!(
            check(&spec),
            Ok(()),
            "valid: a console AutorunFile needs a Windows host, a placement rule (place::judge), not a validation one"
        );
        let spec = CreateSessionSpec { storage_root: "s".repeat(PATH_MAX_CHARS + 1), ..valid() };
        assert_eq!(check(&spec).unwrap_err(), "StorageRoot must be at most 1024 characters");
        let spec = CreateSessionSpec { permissions_file: vec![b'a'; PERMISSIONS_MAX_BYTES + 1], ..valid() };
        assert_eq!(check(&spec).unwrap_err(), "PermissionsFile must be at most 65536 bytes");
        let spec = CreateSessionSpec { permissions_file: vec![0xff], ..valid() };
        assert_eq!(check(&spec).unwrap_err(), "PermissionsFile must be a UTF-8 text file");
        let spec = CreateSessionSpec { owner: "al\u{0}ice".into(), ..valid() };
        assert_eq!(check(&spec).unwrap_err(), "Owner must not contain control characters");
    }

    #[test]
    fn requirements_are_bounded_and_parsed() {
        let spec = CreateSessionSpec { requirements: format!("a = '{}'", "v".repeat(4096)), ..valid() };
        assert_eq!(check(&spec).unwrap_err(), "Requirements must be at most 4096 characters");
        let spec = CreateSessionSpec { requirements: "tag:os = linux".into(), ..valid() };
        assert!(check(&spec).unwrap_err().starts_with("requirements: column 10: "));
        let spec = CreateSessionSpec { requirements: "tag:os = 'linux' and gpu = 'yes'".into(), ..valid() };
        assert_eq!(check(&spec), Ok(()));
    }
}
