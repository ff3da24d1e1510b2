//! Per-item validation of CreateSessions specs.
//!
//! Each item is judged on its own: a bad item becomes an `UnsuccessfulList`
//! entry with the message returned here, and never stops the other items.
//! Messages name the API field (PascalCase) so a client can fix its request.
//!
//! `MaxConcurrentClients >= 0` is enforced by the gateway: the spec carries it
//! as an unsigned integer, so a negative value cannot reach placement.

use switchboard_proto::{CreateSessionSpec, SessionType};

use crate::{PlacementConfig, requirements::Requirements};

/// Longest accepted `Owner`, in characters.
pub const OWNER_MAX_CHARS: usize = 256;
/// Longest accepted `Name`, in characters.
pub const NAME_MAX_CHARS: usize = 256;
/// Longest accepted `Requirements` expression, in characters.
pub const REQUIREMENTS_MAX_CHARS: usize = crate::requirements::MAX_CHARS;

/// Checks one spec; `Err` holds the API's `FailureReason`.
pub fn validate_spec(spec: &CreateSessionSpec, config: &PlacementConfig) -> Result<(), String> {
    if spec.owner.trim().is_empty() {
        return Err("Owner is required".into());
    }
    if spec.owner.chars().count() > OWNER_MAX_CHARS {
        return Err(format!("Owner must be at most {OWNER_MAX_CHARS} characters"));
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
    if spec.autorun_file_arguments.len() > config.autorun_args_max {
        return Err(format!("AutorunFileArguments must have at most {} items", config.autorun_args_max));
    }
    if let Some(position) =
        spec.autorun_file_arguments.iter().position(|arg| arg.chars().count() > config.autorun_arg_max_len)
    {
        return Err(format!(
            "AutorunFileArguments item {position} is longer than {} characters",
            config.autorun_arg_max_len
        ));
    }
    if spec.requirements.chars().count() > REQUIREMENTS_MAX_CHARS {
        return Err(format!("Requirements must be at most {REQUIREMENTS_MAX_CHARS} characters"));
    }
    Requirements::parse(&spec.requirements)?;
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
        let spec = CreateSessionSpec { autorun_file_arguments: vec!["x".into(); 51], ..valid() };
        assert_eq!(check(&spec).unwrap_err(), "AutorunFileArguments must have at most 50 items");
        let spec = CreateSessionSpec { autorun_file_arguments: vec!["ok".into(), "y".repeat(151)], ..valid() };
        assert_eq!(check(&spec).unwrap_err(), "AutorunFileArguments item 1 is longer than 150 characters");
        let config = PlacementConfig { autorun_args_max: 1, autorun_arg_max_len: 2, ..Default::default() };
        let spec = CreateSessionSpec { autorun_file_arguments: vec!["abc".into()], ..valid() };
        assert_eq!(
            validate_spec(&spec, &config).unwrap_err(),
            "AutorunFileArguments item 0 is longer than 2 characters"
        );
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
